"""`nw docs`: dbt's documentation site for every pipeline: lineage, models, tests, exposures,
each model and source named in the database where it lives, with its column types.

dbt-postgres catalogs one database per run (it refuses a project whose relations span
databases), so dbt runs once per warehouse (dbt target), for the folders of the pipelines
living there: `dbt docs generate` (manifest and catalog), then `dbt source freshness` for their
sources that have a freshness rule and a table, each in its own target path (transform/target/docs-<target>).
The runs' manifests and catalogs are merged into transform/target/docs, which `dbt docs serve`
serves: each pipeline's models and sources come from its own warehouse's run, and each measured
source's description ends with its freshness result, so its page says how old its newest data is.
Stale sources are reported, not fatal: the docs describe the project whatever the data's age.
A warehouse whose password is not set is documented from the project alone (no column types).

The output is one line per phase (live on a terminal, else a line every few seconds while a phase
runs); dbt's own output goes to a log file named on the first line.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from northwind_elt.core import ledger, settings
from northwind_elt.core.errors import ConfigError
from northwind_elt.core.text import number, plural, seconds
from northwind_elt.entry.progress import LiveProgress, Task
from northwind_elt.protocol.meltano import meltano_executable

PLUGIN = "dbt-postgres"
# The dbt target (transform/profiles.yml) of each warehouse a pipeline can live in. Analytics is the
# profile's default target, which DBT_TARGET may change, as for the builds.
DBT_TARGETS = {"PEOPLE_PG": "people", "PADAM_WH_PG": "padam", "ADS_PG": "ads"}
SITE = Path("target") / "docs"  # under the dbt project: what `dbt docs serve --target-path target/docs` serves
# dbt's output lines start with the time; the live detail shows what follows it. Meltano's own log
# lines (an ISO timestamp, then the level) are only for the log file.
_DBT_TIME = re.compile(r"^\s*\d\d:\d\d:\d\d(?:\.\d+)?\s+")
_MELTANO_LINE = re.compile(r"^\d{4}-\d\d-\d\dT")
# A source with a freshness rule but no result: its table does not exist yet, or dbt could not
# query it (its message is in the log).
NOT_LOADED, NOT_MEASURED = "not loaded yet", "not measured"


def dbt_project() -> Path:
    return settings.project_root() / "transform"


@dataclass(frozen=True)
class Warehouse:
    """One dbt target and the pipelines (folders under transform/models) whose models live there."""

    prefix: str  # the connection's variable prefix, e.g. PEOPLE_PG
    target: str
    pipelines: tuple[str, ...]

    @property
    def name(self) -> str:
        return "+".join(self.pipelines)

    @property
    def database(self) -> str:
        return settings.pg_conn(self.prefix).dbname

    @property
    def configured(self) -> bool:
        """Set up on this machine: its password is set (else there is nothing to connect to)."""
        return bool(os.environ.get(f"{self.prefix}_PASSWORD"))

    @property
    def target_path(self) -> Path:
        """Relative to the dbt project, as dbt's --target-path takes it."""
        return Path("target") / f"docs-{self.target}"

    def selection(self) -> list[str]:
        folders = [f"path:models/{name}" for name in self.pipelines]
        tests = [f"path:tests/{name}" for name in self.pipelines if (dbt_project() / "tests" / name).is_dir()]
        return folders + tests


def warehouses() -> list[Warehouse]:
    """Every registered pipeline with a folder of dbt models or sources, grouped by its warehouse."""
    from northwind_elt.pipelines import REGISTRY

    grouped: dict[str, list[str]] = {}
    for pipeline in REGISTRY.values():
        if (dbt_project() / "models" / pipeline.name).is_dir():
            grouped.setdefault(pipeline.warehouse, []).append(pipeline.name)
    default_target = os.environ.get("DBT_TARGET") or "dev"
    return [
        Warehouse(prefix, DBT_TARGETS.get(prefix, default_target), tuple(names)) for prefix, names in grouped.items()
    ]


def docs_day() -> dt.date:
    """The newest day Northwind loaded (what the compiled SQL shows), else today."""
    days = ledger.latest_by_day(1).get("northwind", {})
    return dt.date.fromisoformat(next(iter(days))) if days else ledger.now().date()


def pipeline_of(node: dict[str, Any]) -> str | None:
    """The pipeline folder a manifest node comes from: models/<pipeline>/... or tests/<pipeline>/..."""
    parts = Path(node.get("original_file_path") or "").parts
    return parts[1] if len(parts) > 2 and parts[0] in ("models", "tests") else None


# -- freshness in the site ---------------------------------------------------------------------


def _hours(ago_s: float) -> str:
    hours = ago_s / 3600
    # One decimal (text.seconds' format) while it says something; whole hours from 10 on.
    return plural(round(hours), "hour") if hours >= 10 else f"{seconds(hours)} hours"


def _rule(criteria: dict[str, Any]) -> str:
    rules = [
        f"{level} after {plural(rule['count'], rule['period'])}"
        for level in ("warn", "error")
        if (rule := criteria.get(f"{level}_after") or {}).get("count")
    ]
    return ", ".join(rules)


def freshness_text(result: dict[str, Any]) -> str:
    """The paragraph a source's page shows about its freshness, from one result of sources.json."""
    checked = result.get("snapshotted_at") or ""
    when = _utc(checked) if checked else "this run"
    head = f"**Freshness**, as `nw docs` measured it ({when})"
    status = result.get("status", "")
    if status in ("pass", "warn", "error"):
        rule = f" ({_rule(result.get('criteria') or {})})" if _rule(result.get("criteria") or {}) else ""
        if _never_loaded(result):
            return f"{head}: **{status}**. No row is loaded yet{rule}."
        return (
            f"{head}: **{status}**. The newest row was loaded at {_utc(result['max_loaded_at'])}, "
            f"{_hours(result['max_loaded_at_time_ago_in_s'])} before the check{rule}."
        )
    shown = status if status in (NOT_LOADED, NOT_MEASURED) else NOT_MEASURED
    return f"{head}: **{shown}** ({result.get('error') or status or 'no result'})."


def _never_loaded(result: dict[str, Any]) -> bool:
    """dbt reports an empty table as loaded at 0001-01-01 ("infinitely long ago")."""
    return str(result.get("max_loaded_at") or "").startswith("0001-")


def _utc(timestamp: str) -> str:
    try:
        moment = dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return timestamp
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC)
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def summarise_freshness(results: list[dict[str, Any]]) -> str:
    """'7 sources: 7 error; newest data loaded at 2024-01-15 00:00 UTC (1,234 hours before the check)'."""
    counts: dict[str, int] = {}
    for result in results:
        counts[result.get("status", "?")] = counts.get(result.get("status", "?"), 0) + 1
    text = f"{plural(len(results), 'source')}: " + ", ".join(
        f"{number(n)} {status}" for status, n in sorted(counts.items())
    )
    measured = [r for r in results if r.get("max_loaded_at_time_ago_in_s") is not None and not _never_loaded(r)]
    if measured:
        newest = min(measured, key=lambda r: r["max_loaded_at_time_ago_in_s"])
        text += (
            f"; newest data loaded at {_utc(newest['max_loaded_at'])} "
            f"({_hours(newest['max_loaded_at_time_ago_in_s'])} before the check)"
        )
    elif any(_never_loaded(r) for r in results):
        text += "; no row loaded yet"
    return text


# -- the merged site ---------------------------------------------------------------------------


@dataclass
class Generated:
    """One warehouse's run: its manifest and catalog, and its sources' freshness results."""

    warehouse: Warehouse
    manifest: dict[str, Any]
    catalog: dict[str, Any]
    freshness: list[dict[str, Any]] = field(default_factory=list)


def merge(runs: list[Generated]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(manifest, catalog) of the whole project: every pipeline's nodes and sources as its own
    warehouse's run compiled and catalogued them; the rest (exposures, macros, lineage) from the first run."""
    manifest = {key: dict(value) if isinstance(value, dict) else value for key, value in runs[0].manifest.items()}
    catalog: dict[str, Any] = {"metadata": runs[0].catalog.get("metadata", {}), "nodes": {}, "sources": {}}
    errors: list[str] = []
    for run in runs:
        ours = set(run.warehouse.pipelines)
        for key in ("nodes", "sources", "unit_tests"):
            for unique_id, node in run.manifest.get(key, {}).items():
                if pipeline_of(node) in ours:
                    manifest[key][unique_id] = node
        for key in ("nodes", "sources"):
            for unique_id, entry in run.catalog.get(key, {}).items():
                node = manifest["nodes"].get(unique_id) or manifest["sources"].get(unique_id) or {}
                if pipeline_of(node) in ours:
                    catalog[key][unique_id] = entry
        errors += run.catalog.get("errors") or []
        for result in run.freshness:
            unique_id = result.get("unique_id", "")
            if unique_id in manifest["sources"]:
                source = dict(manifest["sources"][unique_id])  # a copy: the run's own manifest is left alone
                said = (source.get("description") or "").strip()
                source["description"] = "\n\n".join(filter(None, [said, freshness_text(result)]))
                manifest["sources"][unique_id] = source
    catalog["errors"] = errors or None
    return manifest, catalog


def write_site(manifest: dict[str, Any], catalog: dict[str, Any], index_from: Path) -> Path:
    site = dbt_project() / SITE
    site.mkdir(parents=True, exist_ok=True)
    for name, content in (("manifest.json", manifest), ("catalog.json", catalog)):
        partial = site / f".{name}.partial"
        partial.write_text(json.dumps(content))
        partial.replace(site / name)  # a server already running never reads half a file
    shutil.copyfile(index_from / "index.html", site / "index.html")
    return site


# -- running dbt -------------------------------------------------------------------------------


class DbtLog:
    """dbt's full output, every run's lines prefixed with its warehouse; shared by the threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, prefix: str, line: str) -> None:
        with self._lock:
            self._file.write(f"[{prefix}] {line.rstrip()}\n")
            self._file.flush()

    def tail(self, prefix: str, lines: int = 15) -> str:
        with self._lock:
            text = self.path.read_text(encoding="utf-8", errors="replace").splitlines()
        ours = [line for line in text if line.startswith(f"[{prefix}] ")]
        return "\n".join(ours[-lines:])

    def close(self) -> None:
        self._file.close()


def _invoke(args: list[str], env: dict[str, str], log: DbtLog, prefix: str, task: Task | None) -> int:
    """`meltano invoke dbt-postgres ARGS`, its output into the log (the latest line as the task's detail)."""
    command = [meltano_executable(), "invoke", PLUGIN, *args]
    log.write(prefix, "$ " + " ".join(command[1:]))
    # From the dbt project (Meltano finds its project upwards): dbt matches a `path:` selector against
    # sources relative to the working directory when it builds the catalog.
    with subprocess.Popen(
        command, env=env, cwd=dbt_project(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(prefix, line)
            shown = _DBT_TIME.sub("", line).strip()
            if task is not None and shown and not _MELTANO_LINE.match(shown):
                task.update(detail=shown[:40])
    log.write(prefix, f"(exit status {proc.returncode})")
    return proc.returncode


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


class DocsFailed(Exception):
    pass


def _document(
    warehouse: Warehouse, env: dict[str, str], log: DbtLog, progress: LiveProgress, stale: list[str]
) -> Generated:
    """One warehouse: docs generate, then the freshness of its sources that have a rule."""
    name, project = warehouse.name, dbt_project()
    path = warehouse.target_path
    common = ["--target", warehouse.target, "--target-path", str(path), "--log-path", str(path / "logs")]
    run_env = dict(env)
    offline: list[str] = []
    if not warehouse.configured:
        # Nothing to connect to: the site still shows its models, sources and descriptions, named
        # in their database, without column types (dbt then never opens a connection).
        offline = ["--no-compile", "--empty-catalog"]
        run_env.setdefault(f"{warehouse.prefix}_PASSWORD", "")
    where = f"{warehouse.database} database"
    task = progress.start(f"{name}: docs generate ({where})")
    generate = ["docs", "generate", *common, "--select", *warehouse.selection(), *offline]
    code = _invoke(generate, run_env, log, name, task)
    manifest, catalog = _read_json(project / path / "manifest.json"), _read_json(project / path / "catalog.json")
    if code != 0 or not manifest:
        task.finish(f"{name}: docs generate ({where}) FAILED after {seconds(task.elapsed())} s; dbt said:")
        progress.print(log.tail(name))
        raise DocsFailed(name)
    ours = set(warehouse.pipelines)
    models = [n for n in manifest.get("nodes", {}).values() if n["resource_type"] == "model" and pipeline_of(n) in ours]
    sources = [s for s in manifest.get("sources", {}).values() if pipeline_of(s) in ours]
    typed = len(catalog.get("nodes", {})) + len(catalog.get("sources", {}))
    what = plural(len(sources), "source")
    what = f"{plural(len(models), 'model')}, {what}" if models else what
    unset = f"no column types: {warehouse.prefix}_PASSWORD is not set"
    types = f"{number(typed)} of them with column types" if warehouse.configured else unset
    task.finish(f"{name}: docs generate ({where}): {what}, {types} ({seconds(task.elapsed())} s)")
    generated = Generated(warehouse, manifest, catalog)

    checked = [s for s in sources if _has_freshness(s)] if warehouse.configured else []
    # A table the catalog does not have is not loaded yet: nothing to ask dbt.
    present = [s for s in checked if s["unique_id"] in catalog.get("sources", {})]
    results: dict[str, dict[str, Any]] = {}
    if present:
        task = progress.start(f"{name}: source freshness")
        results_path = project / path / "sources.json"
        results_path.unlink(missing_ok=True)
        selected = [f"source:{s['source_name']}.{s['name']}" for s in present]
        code = _invoke(["source", "freshness", *common, "--select", *selected], run_env, log, name, task)
        results = {r.get("unique_id"): r for r in _read_json(results_path).get("results", [])}

    def unmeasured(source: dict[str, Any]) -> dict[str, Any]:
        if source not in present:
            return {"unique_id": source["unique_id"], "status": NOT_LOADED, "error": "the table does not exist yet"}
        why = f"dbt could not query the table: its message is in {log.path}"
        return {"unique_id": source["unique_id"], "status": NOT_MEASURED, "error": why}

    generated.freshness = [results.get(s["unique_id"]) or unmeasured(s) for s in checked]
    if not checked:
        return generated
    summary = summarise_freshness(generated.freshness)
    if any(r.get("status") != "pass" for r in generated.freshness):
        stale.append(name)
    line = f"{name}: source freshness: {summary}"
    if present:
        task.finish(f"{line} ({seconds(task.elapsed())} s)")
    else:
        progress.print(line)
    return generated


def _has_freshness(source: dict[str, Any]) -> bool:
    rules = (source.get("config") or {}).get("freshness") or source.get("freshness") or {}
    return any((rules.get(level) or {}).get("count") for level in ("warn_after", "error_after"))


def generate(env: dict[str, str], log: DbtLog, progress: LiveProgress) -> tuple[Path, list[str]]:
    """Every warehouse documented (side by side, as many as there are cores), then the site merged."""
    found = warehouses()
    stale: list[str] = []
    with ThreadPoolExecutor(max_workers=max(1, min(len(found), os.cpu_count() or 1))) as pool:
        runs = list(pool.map(lambda w: _document(w, env, log, progress, stale), found))
    task = progress.start("site: merge")
    manifest, catalog = merge(runs)
    site = write_site(manifest, catalog, dbt_project() / runs[0].warehouse.target_path)
    models = sum(1 for n in manifest["nodes"].values() if n["resource_type"] == "model")
    task.finish(
        f"site: {plural(models, 'model')} and {plural(len(manifest['sources']), 'source')} of "
        f"{plural(len(found), 'warehouse')}, {number(len(catalog['nodes']) + len(catalog['sources']))} with column "
        f"types: {site} ({seconds(task.elapsed())} s)"
    )
    return site, stale


def docs(host: str | None, port: int | None, serve: bool = True) -> int:
    host = host or os.environ.get("DBT_DOCS_HOST") or "127.0.0.1"
    port_text = str(port or os.environ.get("DBT_DOCS_PORT") or 8081)
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(
            f"DBT_DOCS_PORT={port_text!r} is not a port number", "set DBT_DOCS_PORT in .env to 1024-65535"
        )
    day = docs_day()
    # A database's port left unset follows PG_PORT (dbt's profiles read <PREFIX>_PORT as given).
    env = {**os.environ, **settings.derived_ports(), "RUN_DATE": day.isoformat()}
    env |= {"DBT_DOCS_HOST": host, "DBT_DOCS_PORT": port_text}
    env |= {"NO_COLOR": "1", "DBT_USE_COLORS": "false"}
    log = DbtLog(settings.data_dir() / "logs" / "docs" / f"docs-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}.log")
    try:
        print(f"nw docs: dbt docs compiled for {day}, one dbt run per warehouse; dbt's output: {log.path}", flush=True)
        started = time.monotonic()
        try:
            with LiveProgress() as progress:
                site, stale = generate(env, log, progress)
        except DocsFailed as failed:
            print(
                f"FAILED: dbt docs generate for {failed} (compiled for {day}). Fix the cause above (full output: "
                f"{log.path}), then rerun: nw docs",
                file=sys.stderr,
            )
            return 1
        if stale:
            print(f"(sources of {', '.join(stale)}: stale or not loaded yet, see above; the docs are generated anyway)")
        print(f"dbt docs generated in {seconds(time.monotonic() - started)} s: {site / 'index.html'}", flush=True)
        if not serve:
            return 0
        code = _serve(env, log, host, int(port_text))
        if code != 0:
            print(f"FAILED: dbt docs serve on {host}:{port_text}; dbt said:\n{log.tail('serve')}", file=sys.stderr)
        return code
    finally:
        log.close()


def _serve(env: dict[str, str], log: DbtLog, host: str, port: int) -> int:
    """Serve until Ctrl-C or SIGTERM, which stop the server's whole process tree (Meltano, dbt); the
    address is printed once the server answers. Its output (requests included) goes to the log."""
    server = subprocess.Popen(
        [meltano_executable(), "invoke", f"{PLUGIN}:docs-serve"], env=env, cwd=settings.project_root(),
        start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert server.stdout is not None
    copier = threading.Thread(target=_copy_lines, args=(server.stdout, log, "serve"), daemon=True)
    copier.start()

    stopped: list[int] = []

    def stop(signum: int, _frame: object) -> None:
        stopped.append(signum)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with LiveProgress() as progress:
            task = progress.start("serve: starting dbt docs serve")
            while not stopped and server.poll() is None and not _answers(host, port):
                time.sleep(0.2)
            task.finish()
        if not stopped and server.poll() is None:
            print(
                f"dbt docs on http://{host}:{port} (lineage: the graph button, bottom right); Ctrl-C stops it",
                flush=True,
            )
        code = server.wait()
        copier.join()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if stopped or code == 0 else code  # asked to stop: Meltano's own exit status says nothing


def _answers(host: str, port: int) -> bool:
    """The server accepts connections (one serving every interface is asked on the loopback)."""
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host).is_unspecified:
            host = "127.0.0.1"
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _copy_lines(lines: Iterable[str], log: DbtLog, prefix: str) -> None:
    for line in lines:
        log.write(prefix, line)
