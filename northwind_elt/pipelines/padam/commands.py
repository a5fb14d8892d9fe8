"""`nw padam ...`: the PADAM pipeline's commands (generate a month, prepare, export, reconcile).

  nw padam insert-month YEAR MONTH     replace the month in production (RANDOM_MAIN_CONTROLLER rows)
  nw padam prepare [--full-refresh]    meltano run padam-prepare: incremental EL, merge, dbt build
  nw padam export YEAR MONTH           the month's stats files and the year to date
  nw padam reconcile                   count and sum per month, production vs warehouse
  nw padam up                          start the embedded server if PADAM lives on it, else check
  nw padam merge                       (Meltano task of padam-prepare) apply the landed rows, reconcile

The unit of PADAM is a calendar month, not a day: none of these takes --date.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from filelock import FileLock, Timeout

from northwind_elt.core import settings
from northwind_elt.core.errors import CommandError, ConfigError
from northwind_elt.core.locks import AlreadyRunning
from northwind_elt.pipelines.padam import generator, warehouse
from northwind_elt.pipelines.padam import outputs as padam_export
from northwind_elt.protocol.meltano import meltano_executable

PRODUCTION, WAREHOUSE = "PADAM_PROD_PG", "PADAM_WH_PG"
EXPORT_DIR_ENV = "PADAM_EXPORT_DIR"
PREPARE = "nw padam prepare"
FULL_REFRESH = "nw padam prepare --full-refresh"


class PadamError(CommandError):
    """A PADAM step failed; the message ends with the command to run next."""

    def __init__(self, step: str, cause: str, fix: str | None = None, rerun: str | None = None) -> None:
        super().__init__(f"padam {step}", None, cause, fix, rerun)


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


def _validated(step: str, year: str, month: str, *, controller: bool = True) -> tuple[int, int, int]:
    """YEAR, MONTH and (for the generator) RANDOM_MAIN_CONTROLLER, or a PadamError naming the bad one."""
    try:
        return generator.validate(year, month, generator.controller_from_env() if controller else 1)
    except generator.InvalidInput as err:
        raise PadamError(step, f"{err}; nothing was changed", rerun=None) from None


@contextmanager
def _connect(prefix: str, step: str, rerun: str) -> Iterator[psycopg.Connection]:
    """A connection for `step`; an unreachable database is a PadamError with the fix and the rerun."""
    try:
        conn = warehouse.connect(prefix)
    except psycopg.OperationalError as err:
        reason = str(err).strip().splitlines()[-1].strip()
        raise PadamError(
            step,
            f"cannot reach {settings.describe_conn(prefix)}: {reason}; nothing was changed",
            "start the database (make db, or nw db up) or fix the connection settings",
            rerun,
        ) from None
    with conn:
        yield conn


@contextmanager
def _prepare_lock(step: str) -> Iterator[None]:
    """One prepare at a time; an export waits for a running prepare (dbt publishes model by model)."""
    path = padam_dir() / ".prepare.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if step == "prepare":
            raise AlreadyRunning(
                f"padam prepare is already running (lock {path}); wait for it, then rerun if it failed"
            ) from None
        print(f"padam {step}: waiting for the running padam prepare to finish (lock {path})", flush=True)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def insert_month(year: str, month: str) -> str:
    y, m, c = _validated("insert-month", year, month)
    _need(PRODUCTION, why="the generator writes the month into the production database")

    try:
        with psycopg.connect(settings.pg_conn(PRODUCTION).conninfo()) as conn:
            generator.ensure_schema(conn)
            count = generator.insert_month(conn, y, m, c)
    except psycopg.OperationalError as err:
        raise PadamError(
            "insert-month",
            f"cannot reach {settings.describe_conn(PRODUCTION)}: {str(err).strip().splitlines()[-1].strip()}; "
            f"{y}-{m} is unchanged",
            "start the database (make db, or nw db up)",
            f"nw padam insert-month {y} {m}",
        ) from None
    return f"padam insert-month: {y}-{m} replaced in entity with {count} rows ({generator.CONTROLLER_ENV}={c})"


def check_databases() -> str:
    """Both PADAM databases answer (the entry layer starts the embedded server first when they live on it)."""
    _need(PRODUCTION, WAREHOUSE, why="PADAM's databases are reached with them")
    for prefix in (PRODUCTION, WAREHOUSE):
        with _connect(prefix, "up", "nw padam up"):
            pass
    return "padam: both databases answer"


def _reconcile(step: str) -> list[warehouse.MonthDiff]:
    with _connect(PRODUCTION, step, PREPARE) as prod, _connect(WAREHOUSE, step, PREPARE) as wh:
        produced = warehouse.monthly_counts(prod, "public.entity")
        stored = warehouse.monthly_counts(wh, f"{warehouse.RAW_SCHEMA}.entity")
    return warehouse.differences(produced, stored)


def merge() -> str:
    """The Meltano task after the EL block: apply the landing table, then reconcile raw with production."""
    _need(PRODUCTION, WAREHOUSE, why="the merge reconciles the warehouse with production")
    marker = stale_marker()
    with _connect(WAREHOUSE, "merge", PREPARE) as wh:
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


def _run_job(full_refresh: bool, verbose: bool) -> int:
    """`meltano run padam-prepare`; its output goes to a log file (streamed too with verbose)."""
    env = dict(os.environ)
    # --force: the prepare lock guards concurrency (and dies with its holder); Meltano's own
    # "already running" record of a killed run would otherwise block every rerun for a while.
    args = [meltano_executable(), "run", "--force"]
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
    with _prepare_lock("prepare"):
        marker = stale_marker()
        marker.unlink(missing_ok=True)
        if not full_refresh and _run_job(False, verbose) == 0:
            return "padam prepare: done"
        if not full_refresh:
            if not marker.exists():
                raise PadamError(
                    "prepare",
                    "meltano run padam-prepare failed (its output above names the task and the cause); the "
                    "warehouse keeps its last complete state and the exports are unchanged",
                    None,
                    PREPARE,
                )
            print(
                "padam prepare: the warehouse is stale for "
                + "; ".join(json.loads(marker.read_text()))
                + " - reloading every month from production (full refresh)",
                flush=True,
            )
        # A full refresh reads everything again: rows a killed run left in the landing table
        # (possibly of an older generation of a month) must not be merged with it.
        with _connect(WAREHOUSE, "prepare", FULL_REFRESH) as wh:
            warehouse.clear_landing(wh)
        if _run_job(True, verbose) == 0:
            return "padam prepare: done " + (
                "(full refresh)" if full_refresh else "(stale months reloaded with a full refresh)"
            )
        raise PadamError(
            "prepare",
            "meltano run --full-refresh padam-prepare failed (its output above names the task and the cause); "
            "the exports are unchanged and refuse any month the published stats do not reconcile",
            None,
            FULL_REFRESH,
        )


def export(year: str, month: str) -> str:
    y, m, _ = _validated("export", year, month, controller=False)
    _need(PRODUCTION, WAREHOUSE, why="the export checks the warehouse against production")
    root = export_root()
    rerun = f"nw padam export {y} {m}"
    with (
        _prepare_lock("export"),
        _connect(PRODUCTION, "export", rerun) as prod,
        _connect(WAREHOUSE, "export", rerun) as wh,
    ):
        produced = warehouse.monthly_counts(prod, "public.entity")
        # One snapshot of the marts for the checks and the files.
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
        # The yearly file comes from the year-to-date model: it must add up to months 1..m too.
        through = [produced[(y, month)] for month in range(1, m + 1) if (y, month) in produced]
        expected_ytd = (sum(c for c, _ in through), sum(s for _, s in through))
        year_to_date = warehouse.year_to_date_counts(wh, y, m)
        if year_to_date != expected_ytd:
            raise PadamError(
                "export",
                f"the published year to date through {y}-{m} ({year_to_date}) is not production's "
                f"{expected_ytd} (count, sum); nothing was written",
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
    with (
        _connect(PRODUCTION, "reconcile", "nw padam reconcile") as prod,
        _connect(WAREHOUSE, "reconcile", "nw padam reconcile") as wh,
    ):
        produced = warehouse.monthly_counts(prod, "public.entity")
        stored = warehouse.monthly_counts(wh, f"{warehouse.RAW_SCHEMA}.entity")
        published = warehouse.mart_monthly_counts(wh)
    lines = [f"{'month':<9}{'production rows / sum':>24}{'warehouse raw':>24}{'published stats':>24}  state"]
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
