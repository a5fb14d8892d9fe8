"""`nw padam ...`: the PADAM pipeline's commands (generate a month, prepare, export, reconcile).

  nw padam insert-month YEAR MONTH     replace the month in production (RANDOM_MAIN_CONTROLLER rows)
  nw padam prepare [--full-refresh]    meltano run padam-prepare: incremental EL, merge, dbt build
  nw padam export YEAR MONTH           the month's stats files and the year to date
  nw padam reconcile                   count and sum per month, production vs warehouse
  nw padam merge                       (Meltano task of padam-prepare) apply the landed rows, reconcile

The unit of PADAM is a calendar month, not a day: none of these takes --date.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

from filelock import FileLock, Timeout

from northwind_elt import settings
from northwind_elt.errors import ConfigError, PipelineError
from northwind_elt.locks import AlreadyRunning
from northwind_elt.padam import export as padam_export
from northwind_elt.padam import generator, warehouse

PRODUCTION, WAREHOUSE = "PADAM_PROD_PG", "PADAM_WH_PG"
EXPORT_DIR_ENV = "PADAM_EXPORT_DIR"
PREPARE = "nw padam prepare"
FULL_REFRESH = "nw padam prepare --full-refresh"


class PadamError(PipelineError):
    """A PADAM step failed; the message ends with the command to run next."""

    def __init__(self, step: str, cause: str, fix: str | None = None, rerun: str | None = None) -> None:
        self._rerun = rerun
        super().__init__(f"padam {step}", None, cause, fix)

    @property
    def rerun(self) -> str | None:
        return self._rerun


def padam_dir() -> Path:
    return settings.data_dir() / "padam"


def export_root() -> Path:
    configured = os.environ.get(EXPORT_DIR_ENV)
    if not configured:
        return padam_dir() / "exports"
    if not Path(configured).is_absolute():
        raise ConfigError(
            f"{EXPORT_DIR_ENV}={configured!r} is not an absolute path",
            f"set {EXPORT_DIR_ENV} to an absolute path in {settings.project_root() / '.env'}, or unset it "
            f"for {padam_dir() / 'exports'}",
        )
    return Path(configured)


def stale_marker() -> Path:
    """Written by the merge when production changed behind the bookmark; read by `prepare`."""
    return padam_dir() / "stale-months.json"


def _need(*prefixes: str, why: str) -> None:
    settings.require([v for p in prefixes for v in settings.pg_variables(p)], why)


def _validated(step: str, year: str, month: str) -> tuple[int, int, int]:
    try:
        return generator.validate(year, month, generator.controller_from_env())
    except generator.InvalidInput as err:
        raise PadamError(step, f"{err}; nothing was changed", rerun=None) from None


def insert_month(year: str, month: str) -> str:
    y, m, c = _validated("insert-month", year, month)
    _need(PRODUCTION, why="the generator writes the month into the production database")
    import psycopg

    try:
        with psycopg.connect(settings.pg_conn(PRODUCTION).conninfo()) as conn:
            generator.ensure_schema(conn)
            count = generator.insert_month(conn, y, m, c)
    except psycopg.OperationalError as err:
        raise PadamError(
            "insert-month",
            f"cannot reach {settings.describe_conn(PRODUCTION)}: {str(err).strip().splitlines()[-1]}; "
            f"{y}-{m} is unchanged",
            "start the database (make db, or nw db up)",
            f"nw padam insert-month {y} {m}",
        ) from None
    return f"padam insert-month: {y}-{m} replaced in entity with {count} rows ({generator.CONTROLLER_ENV}={c})"


def _reconcile(step: str) -> list[warehouse.MonthDiff]:
    with warehouse.connect(PRODUCTION) as prod, warehouse.connect(WAREHOUSE) as wh:
        produced = warehouse.monthly_counts(prod, "public.entity")
        stored = warehouse.monthly_counts(wh, f"{warehouse.RAW_SCHEMA}.entity")
    return warehouse.differences(produced, stored)


def merge() -> str:
    """The Meltano task after the EL block: apply the landing table, then reconcile raw with production."""
    _need(PRODUCTION, WAREHOUSE, why="the merge reconciles the warehouse with production")
    marker = stale_marker()
    with warehouse.connect(WAREHOUSE) as wh:
        result = warehouse.merge(wh)
    stale = _reconcile("merge")
    if stale:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps([d.describe() for d in stale]) + "\n")
        months = "\n  ".join(d.describe() for d in stale)
        raise PadamError(
            "prepare",
            f"{result.summary()}; but {len(stale)} month(s) differ from production, changed behind the "
            f"incremental bookmark (regenerated with another {generator.CONTROLLER_ENV}, or loaded out of "
            f"order):\n  {months}\nNothing is exported from a stale warehouse.",
            "reload every month from production with a full refresh",
            FULL_REFRESH,
        )
    marker.unlink(missing_ok=True)
    return f"padam merge: {result.summary()}; every month reconciles with production"


def _meltano() -> str:
    beside = Path(sys.executable).parent / "meltano"
    return str(beside) if beside.exists() else "meltano"


def _run_job(full_refresh: bool, verbose: bool) -> int:
    """`meltano run padam-prepare`; its output goes to a log file (streamed too with verbose)."""
    env = dict(os.environ)
    # --force: the prepare lock guards concurrency (and dies with its holder); Meltano's own
    # "already running" record of a killed run would otherwise block every rerun for a while.
    args = [_meltano(), "run", "--force"]
    if full_refresh:
        args.append("--full-refresh")
        env[warehouse.FULL_REFRESH_ENV] = "1"
        env["DBT_FULL_REFRESH"] = "true"
    else:
        env.pop(warehouse.FULL_REFRESH_ENV, None)
        env.pop("DBT_FULL_REFRESH", None)
    args.append("padam-prepare")
    env["NO_COLOR"] = "1"
    logs = padam_dir() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"prepare-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%fZ}.log"
    print(f"padam prepare: {' '.join(args[1:])} (log: {log})", flush=True)
    tail: list[str] = []
    with log.open("w", encoding="utf-8") as out:
        proc = subprocess.Popen(
            args, env=env, cwd=settings.project_root(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            tail = [*tail[-39:], line]
            if verbose:
                print(line, end="", flush=True)
            elif "padam merge:" in line or "ERROR:" in line:
                print("  " + line.split("nw ", 1)[-1].strip(), flush=True)
        code = proc.wait()
    if code and not verbose:
        print(f"padam prepare: the job failed; last lines of {log}:", file=sys.stderr)
        print("".join(tail), end="", file=sys.stderr, flush=True)
    return code


def prepare(full_refresh: bool = False, verbose: bool = False) -> str:
    """Run the Meltano job; when only stale months failed it, reload once with a full refresh."""
    _need(PRODUCTION, WAREHOUSE, why="the preparation copies production into the warehouse")
    lock_path = padam_dir() / ".prepare.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(lock_path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise AlreadyRunning(
            f"padam prepare is already running (lock {lock_path}); wait for it, then rerun if it failed"
        ) from None
    try:
        marker = stale_marker()
        marker.unlink(missing_ok=True)
        if _run_job(full_refresh, verbose) == 0:
            return "padam prepare: done" + (" (full refresh)" if full_refresh else "")
        if marker.exists() and not full_refresh:
            months = json.loads(marker.read_text())
            print(
                "padam prepare: the warehouse is stale for " + "; ".join(months) + " - reloading every month "
                "from production (full refresh)",
                flush=True,
            )
            if _run_job(True, verbose) == 0:
                return "padam prepare: done (stale months reloaded with a full refresh)"
        raise PadamError(
            "prepare",
            "meltano run padam-prepare failed (its output above names the task and the cause); the "
            "warehouse keeps its last complete state and the exports are unchanged",
            None,
            FULL_REFRESH if marker.exists() or full_refresh else PREPARE,
        )
    finally:
        lock.release()


def export(year: str, month: str) -> str:
    y, m, _ = _validated("export", year, month)
    _need(PRODUCTION, WAREHOUSE, why="the export checks the warehouse against production")
    root = export_root()
    with warehouse.connect(PRODUCTION) as prod, warehouse.connect(WAREHOUSE) as wh:
        produced = warehouse.monthly_counts(prod, "public.entity")
        # One snapshot for the check and the files: a concurrent prepare cannot slip in between.
        wh.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        published = warehouse.mart_monthly_counts(wh)
        if (y, m) not in produced:
            raise PadamError(
                "export",
                f"{y}-{m} has no rows in production; nothing was written",
                "generate it first",
                f"nw padam insert-month {y} {m} && {PREPARE} && nw padam export {y} {m}",
            )
        # The year-to-date file covers months 1..m: every one of them must be current.
        stale = warehouse.differences(produced, published, [(y, month) for month in range(1, m + 1)])
        if stale:
            months = "\n  ".join(d.describe() for d in stale)
            raise PadamError(
                "export",
                f"{y}-{m} is not fully prepared: the published stats differ from production for\n  {months}\n"
                "Nothing was written.",
                None,
                f"{PREPARE} && nw padam export {y} {m}",
            )
        try:
            exported = padam_export.export_month(wh, root, y, m)
        except ValueError as err:
            raise PadamError(
                "export", f"{err}; nothing was written", None, f"{PREPARE} && nw padam export {y} {m}"
            ) from None
    return f"padam export: {y}-{m}: {len(exported.files)} files under {root / f'year={y}'}"


def reconcile() -> tuple[str, int]:
    _need(PRODUCTION, WAREHOUSE, why="reconcile reads both databases")
    with warehouse.connect(PRODUCTION) as prod, warehouse.connect(WAREHOUSE) as wh:
        produced = warehouse.monthly_counts(prod, "public.entity")
        stored = warehouse.monthly_counts(wh, f"{warehouse.RAW_SCHEMA}.entity")
        published = warehouse.mart_monthly_counts(wh)
    lines = [f"{'month':<9}{'production':>24}{'warehouse raw':>24}{'published stats':>24}  state"]
    bad = 0
    for key in sorted(set(produced) | set(stored) | set(published)):
        p, s, pub = (produced.get(key, (0, 0)), stored.get(key, (0, 0)), published.get(key, (0, 0)))
        state = "ok" if p == s == pub else ("unpublished" if p == s else "stale")
        bad += state != "ok"
        fmt = "{0[0]} / {0[1]}".format
        lines.append(f"{key[0]}-{key[1]:02d}  {fmt(p):>24}{fmt(s):>24}{fmt(pub):>24}  {state}")
    if bad:
        lines.append(f"{bad} month(s) not current; fix: {PREPARE} (stale months: {FULL_REFRESH})")
    return "\n".join(lines), 1 if bad else 0
