"""`nw padam ...`: the PADAM pipeline's commands (generate a month, prepare, export, reconcile);
their usage is the package's docstring (northwind_elt/pipelines/padam/__init__.py).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import psycopg
from filelock import FileLock

from northwind_elt.core import ledger, locks, settings, text
from northwind_elt.core.day import configured_lake, today_utc
from northwind_elt.core.errors import CommandError, ConfigError
from northwind_elt.core.lake import s3_options
from northwind_elt.core.locks import plugin_lock
from northwind_elt.pipelines.padam import generator, staleness, warehouse
from northwind_elt.pipelines.padam import outputs as padam_export
from northwind_elt.pipelines.padam.pipeline import PADAM
from northwind_elt.protocol import meltano
from northwind_elt.protocol.attempts import Attempt, attempt

PRODUCTION, WAREHOUSE = "PADAM_PROD_PG", "PADAM_WH_PG"
EXPORT_DIR_ENV = "PADAM_EXPORT_DIR"
PREPARE = "nw padam prepare"
FULL_REFRESH = "nw padam prepare --full-refresh"
INSERT_MONTH_STEP, PREPARE_STEP, EXPORT_STEP = "padam-insert-month", "padam-prepare", "padam-export"
PREPARE_JOB = PADAM.step(PREPARE_STEP).job
# The prepare covers every month: its lock and log folder are keyed by the pipeline, not by a month.
EVERY_MONTH = PADAM.name
# reconcile()'s state of a month whose exported files no longer match production (marked _STALE).
EXPORT_STALE = "export_stale"


class PadamError(CommandError):
    """A PADAM step failed; the message ends with the command to run next."""

    def __init__(self, step: str, cause: str, fix: str | None = None, rerun: str | None = None) -> None:
        super().__init__(f"padam {step}", None, cause, fix, rerun)


def padam_dir() -> Path:
    return settings.data_dir() / "padam"


def export_root() -> Path:
    """PADAM_EXPORT_DIR (an absolute path, or an s3:// URL read with the lake's S3 settings), else
    `padam/exports` in the lake (the data directory, or NW_LAKE_URL's bucket)."""
    lake = configured_lake()
    default = lake.upath(lake.root / "padam" / "exports")
    configured = os.environ.get(EXPORT_DIR_ENV)
    if not configured:
        return default
    if configured.startswith("s3://"):
        from upath import UPath

        return UPath(configured, **s3_options())  # the lake's S3 settings, wherever the lake is
    if not Path(configured).is_absolute():
        raise ConfigError(
            f"{EXPORT_DIR_ENV}={configured!r} is not an absolute path",
            f"set {EXPORT_DIR_ENV} to an absolute path or an s3:// URL in {settings.project_root() / '.env'}, "
            f"or unset it for {default}",
        )
    return Path(configured)


def _pair(count_and_sum: tuple[int, int]) -> str:
    """'7,374 / 29,012': a month's rows and their sum, as nw status shows them."""
    return " / ".join(map(text.number, count_and_sum))


def stale_marker() -> Path:
    """Written by the merge when production changed behind the bookmark; read by `prepare`."""
    return padam_dir() / "stale-months.json"


def _exports_lock() -> FileLock:
    """Held while export files or their _STALE markers are written: a reconcile reading a month
    half written by an export would mark it stale after the export had unmarked it."""
    return locks.data_lock("padam-exports.lock")


def _mark_stale_exports(prod: psycopg.Connection, root: Path, years: list[int] | None = None) -> list[str]:
    """Check the exported files of `years` (default: every exported year) against production now,
    mark the stale ones and unmark the rest (the caller holds `_exports_lock`). Returns the stale
    folders' summaries and the markers that could not be written, as lines of text."""
    exported = staleness.exported_months(root)
    checked = [year for year in exported if years is None or year in years]
    daily = staleness.production_daily(prod, checked)
    stale = staleness.find_stale(root, daily, checked)
    problems = staleness.mark(root, stale, checked)
    return [f"{entry.summary()}\n    marked: {entry.marker}; refresh: {entry.refresh}" for entry in stale] + [
        f"WARNING: {problem}" for problem in problems
    ]


def _stale_note(lines: list[str]) -> str:
    if not lines:
        return ""
    return "\nExported files that no longer match production (marked _STALE):\n  " + "\n  ".join(lines)


def reconcile_fix(state: str, month: str) -> str:
    """The command that puts a month of the reconcile report right (`month` is "YYYY-MM")."""
    if state == EXPORT_STALE:
        year, number = month.split("-")
        return f"{PREPARE} && nw padam export {int(year)} {int(number)}"
    return FULL_REFRESH if state == "stale" else PREPARE


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


def _month_of(year: str, month: str) -> str | None:
    """The ledger's key of YEAR-MONTH, or None when they name no month (the command says why)."""
    try:
        y, m, _ = generator.validate(year, month, 1)
    except generator.InvalidInput:
        return None
    return ledger.month_key(y, m)


def insert_month(year: str, month: str) -> str:
    with attempt(PADAM, INSERT_MONTH_STEP, _month_of(year, month)) as recorded:
        said, count = _insert_month(year, month)
        recorded.succeeded(said, rows=count)
    return said


def _insert_month(year: str, month: str) -> tuple[str, int]:
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
    rows = text.plural(count, "row")
    return f"padam insert-month: {y}-{m} replaced in entity with {rows} ({generator.CONTROLLER_ENV}={c})", count


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
            f"{result.summary()}; but {text.plural(len(stale), 'month')} {'differs' if len(stale) == 1 else 'differ'} "
            "from production, changed behind the "
            f"incremental bookmark (regenerated with another {generator.CONTROLLER_ENV}, or loaded out of "
            f"order):\n  {months}\nNothing is exported from a stale warehouse.",
            "reload every month from production with a full refresh",
            FULL_REFRESH,
        )
    marker.unlink(missing_ok=True)
    return f"padam merge: {result.summary()}; every month reconciles with production"


def _current_month() -> str:
    today = today_utc()
    return ledger.month_key(today.year, today.month)


def _prepare_unit(rerun: str) -> tuple[str, int]:
    """The month a prepare is recorded under, and production's rows (what it brings over).

    A prepare covers every month, so each attempt is recorded once, under the newest month
    production holds when it starts: the month it brings the warehouse up to (the month just
    inserted, in scripts/insert_all_data.sh and the monthly DAG); with production empty (or
    unreadable: the prepare fails then), the current month. `nw status` shows its latest
    attempt in every month's row.
    """
    with _connect(PRODUCTION, "prepare", rerun) as prod:
        counts = warehouse.monthly_counts(prod, "public.entity")
    newest = max(counts, default=None)
    return ledger.month_key(*newest) if newest else _current_month(), sum(rows for rows, _ in counts.values())


def prepare(full_refresh: bool = False, verbose: bool = False) -> str:
    """Run the Meltano job; when only stale months failed it, reload once with a full refresh.

    One prepare at a time (a second one fails at once); an export waits for it, as it waits
    for the export. A SIGTERM or SIGINT stops the job's processes and raises
    `meltano.Interrupted`. The attempt is recorded under one month (`_prepare_unit`).
    """
    _need(PRODUCTION, WAREHOUSE, why="the preparation copies production into the warehouse")
    rerun = FULL_REFRESH if full_refresh else PREPARE
    with (
        meltano.Signals() as signals,
        meltano.holding(
            signals,
            PREPARE_JOB,
            EVERY_MONTH,
            f"run-{PADAM.name}-{PREPARE_STEP}",
            what="padam prepare",
            waiting="padam prepare: waiting for a running padam export (or prepare) to finish",
        ),
        attempt(PADAM, PREPARE_STEP, _current_month()) as recorded,
    ):
        recorded.unit, rows = _prepare_unit(rerun)
        said = _prepare(full_refresh, verbose, signals, recorded)
        padam_export.publish_prepared_manifest()
        recorded.succeeded(said, rows=rows)
    return said


def _prepare(full_refresh: bool, verbose: bool, signals: meltano.Signals, recorded: Attempt) -> str:
    marker = stale_marker()
    marker.unlink(missing_ok=True)
    if not full_refresh and _run_job(False, verbose, signals, recorded) == 0:
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
    if _run_job(True, verbose, signals, recorded) == 0:
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


def _interrupted(signum: int, recorded: Attempt, rerun: str) -> NoReturn:
    recorded.interrupted(signum)
    print(
        f"\nINTERRUPTED: padam prepare ({signal.Signals(signum).name}): its processes are stopped; an export "
        f"refuses any month the published stats do not reconcile.\nRerun: {rerun}",
        file=sys.stderr,
    )
    raise meltano.Interrupted(signum)


def _worth_showing(line: str) -> bool:
    """Of the job's output (all in its log): what the merge concluded, and errors."""
    return "padam merge:" in line or "ERROR:" in line


def _run_job(full_refresh: bool, verbose: bool, signals: meltano.Signals, recorded: Attempt) -> int:
    """`meltano run padam-prepare` through the shared runner: its output goes to a log (streamed
    too with verbose); a signal stops its processes, is recorded and raises Interrupted."""
    flags = ("--full-refresh",) if full_refresh else ()
    refresh: dict[str, str | None] = (
        {warehouse.FULL_REFRESH_ENV: "1", "DBT_FULL_REFRESH": "true"}
        if full_refresh
        else {warehouse.FULL_REFRESH_ENV: None, "DBT_FULL_REFRESH": None}
    )
    rerun = FULL_REFRESH if full_refresh else PREPARE
    if signals.received is not None:  # a signal between two runs: the second never starts
        _interrupted(signals.received, recorded, rerun)
    log = meltano.log_path(PREPARE_JOB, EVERY_MONTH)
    print(f"padam prepare: {' '.join(['run', '--force', *flags, PREPARE_JOB])} (log: {log})", flush=True)
    code, tail, log = meltano.run_meltano_job(
        PREPARE_JOB, EVERY_MONTH, signals, refresh, echo=True if verbose else _worth_showing, flags=flags, log=log
    )
    recorded.log = log
    if signals.received is not None:
        _interrupted(signals.received, recorded, rerun)
    if code and not verbose:
        print(f"padam prepare: the job failed; last lines of {log}:", file=sys.stderr)
        print("".join(tail[-40:]), end="", file=sys.stderr, flush=True)
    return code


def export(year: str, month: str) -> str:
    with attempt(PADAM, EXPORT_STEP, _month_of(year, month)) as recorded:
        said = _export(year, month)
        recorded.succeeded(said)
    return said


def _export(year: str, month: str) -> str:
    y, m, _ = _validated("export", year, month, controller=False)
    _need(PRODUCTION, WAREHOUSE, why="the export checks the warehouse against production")
    root = export_root()
    rerun = f"nw padam export {y} {m}"
    with (
        # dbt publishes the marts model by model: never read them while a prepare runs.
        plugin_lock(PREPARE_JOB, waiting="padam export: waiting for the running padam prepare (or export) to finish"),
        _connect(PRODUCTION, "export", rerun) as prod,
        _connect(WAREHOUSE, "export", rerun) as wh,
        _exports_lock(),
    ):
        # Written or refused, the year's files that no longer match production are marked (the
        # month just written is unmarked), and the message names them.
        try:
            exported = _write_month(prod, wh, root, y, m)
        except PadamError as refused:
            note = _stale_note(_mark_stale_exports(prod, root, [y]))
            raise PadamError("export", refused.cause + note, refused.fix, refused.rerun) from None
        note = _stale_note(_mark_stale_exports(prod, root, [y]))
    return f"padam export: {y}-{m}: {text.plural(len(exported.files), 'file')} under {root / f'year={y}'}{note}"


def _write_month(
    prod: psycopg.Connection, wh: psycopg.Connection, root: Path, y: int, m: int
) -> padam_export.ExportedMonth:
    """Check the month against production and write its files, or refuse (PadamError) writing nothing."""
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
        return padam_export.export_month(wh, root, y, m)
    except ValueError as err:
        raise PadamError(
            "export", f"{err}; nothing was written", None, f"{PREPARE} && nw padam export {y} {m}"
        ) from None


def reconcile() -> tuple[str, int]:
    """Count and sum per month in production, the warehouse and the published stats, and the
    exported files checked against production (stale ones marked _STALE, the rest unmarked).

    A month line ends with its state: ok, unpublished (prepare), stale (the warehouse: prepare
    reloads it) or export_stale (its exported files, or the year-to-date file its export writes,
    differ from production: prepare, then export the month). `nw status` reads these lines.
    """
    _need(PRODUCTION, WAREHOUSE, why="reconcile reads both databases")
    root = export_root()
    with (
        _connect(PRODUCTION, "reconcile", "nw padam reconcile") as prod,
        _connect(WAREHOUSE, "reconcile", "nw padam reconcile") as wh,
    ):
        produced = warehouse.monthly_counts(prod, "public.entity")
        stored = warehouse.monthly_counts(wh, f"{warehouse.RAW_SCHEMA}.entity")
        published = warehouse.mart_monthly_counts(wh)
        with _exports_lock():
            exported = staleness.exported_months(root)
            stale = staleness.find_stale(root, staleness.production_daily(prod, exported))
            problems = staleness.mark(root, stale)
    stale_by_month = staleness.by_month(stale)
    lines = [f"{'month':<9}{'production rows / sum':>24}{'warehouse raw':>24}{'published stats':>24}  state"]
    bad = not_current = 0
    for key in sorted(set(produced) | set(stored) | set(published) | set(stale_by_month)):
        p, s, pub = (produced.get(key, (0, 0)), stored.get(key, (0, 0)), published.get(key, (0, 0)))
        state = "ok" if p == s == pub else ("unpublished" if p == s else "stale")
        not_current += state != "ok"
        if key in stale_by_month:
            state = EXPORT_STALE
        bad += state != "ok"
        lines.append(f"{key[0]}-{key[1]:02d}  {_pair(p):>24}{_pair(s):>24}{_pair(pub):>24}  {state}")
    if not_current:
        lines.append(f"{text.plural(not_current, 'month')} not current; fix: {PREPARE} (stale months: {FULL_REFRESH})")
    if stale:
        lines.append(
            f"{text.plural(len(stale), 'exported folder')} no longer {'matches' if len(stale) == 1 else 'match'} "
            f"production, marked {staleness.MARKER}:"
        )
        for entry in stale:
            lines.append(f"  {entry.summary()}")
            lines.append(f"    marked: {entry.marker}; refresh: {entry.refresh}")
    lines.extend(f"  WARNING: {problem}" for problem in problems)
    return "\n".join(lines), 1 if bad else 0
