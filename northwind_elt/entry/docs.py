"""`nw docs`: dbt's documentation site for every pipeline: lineage, models, tests, exposures.

Source freshness is measured first (its results appear in the site); stale sources are
reported, not fatal: the docs describe the project whatever the data's age. The site is
generated and served from transform/target/docs, apart from the days' build results.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import subprocess
import sys

from northwind_elt.core import ledger, settings
from northwind_elt.core.errors import ConfigError
from northwind_elt.protocol.meltano import meltano_executable

PLUGIN = "dbt-postgres"


def docs_day() -> dt.date:
    """The newest day Northwind loaded (what the compiled SQL shows), else today."""
    days = ledger.latest_by_day(1).get("northwind", {})
    return dt.date.fromisoformat(next(iter(days))) if days else ledger.now().date()


def _invoke(command: str, env: dict[str, str]) -> int:
    return subprocess.call(
        [meltano_executable(), "invoke", f"{PLUGIN}:{command}"], env=env, cwd=settings.project_root()
    )


def docs(host: str | None, port: int | None, serve: bool = True) -> int:
    host = host or os.environ.get("DBT_DOCS_HOST") or "127.0.0.1"
    port_text = str(port or os.environ.get("DBT_DOCS_PORT") or 8081)
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(
            f"DBT_DOCS_PORT={port_text!r} is not a port number", "set DBT_DOCS_PORT in .env to 1024-65535"
        )
    day = docs_day()
    env = {**os.environ, "RUN_DATE": day.isoformat(), "DBT_DOCS_HOST": host, "DBT_DOCS_PORT": port_text}
    env |= {"NO_COLOR": "1", "DBT_USE_COLORS": "false"}
    checks = [("northwind", "freshness", "ANALYTICS_PG"), ("people", "freshness-people", "PEOPLE_PG")]
    # A pipeline without its database's password is not set up here: nothing to measure.
    stale = [name for name, command, db in checks if os.environ.get(f"{db}_PASSWORD") and _invoke(command, env) != 0]
    if stale:
        print(f"(sources of {', '.join(stale)}: stale or not loaded yet, see above; the docs are generated anyway)")
    if _invoke("docs-generate", env) != 0:
        print(
            f"FAILED: dbt docs generate (compiled for {day}). Fix the cause above, then rerun: nw docs", file=sys.stderr
        )
        return 1
    site = settings.project_root() / "transform" / "target" / "docs" / "index.html"
    if not serve:
        print(f"dbt docs generated: {site}")
        return 0
    print(
        f"dbt docs on http://{host}:{port_text} (lineage: the graph button, bottom right); Ctrl-C stops it", flush=True
    )
    return _serve(env)


def _serve(env: dict[str, str]) -> int:
    """Serve until Ctrl-C or SIGTERM, which stop the server's whole process tree (Meltano, dbt)."""
    server = subprocess.Popen(
        [meltano_executable(), "invoke", f"{PLUGIN}:docs-serve"], env=env, cwd=settings.project_root(),
        start_new_session=True,
    )  # fmt: skip

    stopped: list[int] = []

    def stop(signum: int, _frame: object) -> None:
        stopped.append(signum)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = server.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if stopped or code == 0 else code  # asked to stop: Meltano's own exit status says nothing
