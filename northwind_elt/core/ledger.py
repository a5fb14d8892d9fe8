"""The run ledger: per pipeline, unit and step, each attempt's status, rows, duration and error.

A unit is what a pipeline's steps run for, keyed as text: a day "YYYY-MM-DD", a month
"YYYY-MM", a run "YYYY-MM-DD/<run id>" (a run belongs to its day). Callers pass a
`datetime.date` for a day, or the key itself.

A SQLite file under the data directory, so extract steps can record without the
analytics database being up; or, with NW_STATE_BACKEND=postgres, a table every machine shares
(core/state.py). Passwords never reach it: errors pass through `redact`.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import sqlite3
import sys
from collections.abc import Iterable
from contextlib import closing
from pathlib import Path
from typing import Any

from northwind_elt.core import settings, state
from northwind_elt.core.errors import PipelineError

STATUSES = ("success", "failed", "interrupted")
# What writing to the ledger may raise, on either backend (a file, or the state database).
_WRITE_ERRORS: tuple[type[BaseException], ...] = (OSError, sqlite3.Error, PipelineError)


def __getattr__(name: str):
    """WRITE_ERRORS: what a ledger write may raise. psycopg's errors only once psycopg is loaded
    (the postgres state backend): before that none can be raised, and most `nw` processes never
    load it (a sixth of a second each)."""
    if name == "WRITE_ERRORS":
        loaded = sys.modules.get("psycopg")
        return _WRITE_ERRORS + ((loaded.Error,) if loaded is not None else ())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


FAILED = ("failed", "interrupted")
# The kinds of unit; `protocol.definition` names the same three (a unit test ties them).
DAY, MONTH, RUN = "day", "month", "run"

_TABLE = f"""
CREATE TABLE IF NOT EXISTS step_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    pipeline TEXT NOT NULL,
    unit TEXT NOT NULL,
    step TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN {STATUSES!r}),
    started_at TEXT,
    finished_at TEXT NOT NULL,
    duration_s REAL,
    rows INTEGER,
    error TEXT,
    notes TEXT,
    wall_s REAL,
    log TEXT
)
"""
_INDEX = "CREATE INDEX IF NOT EXISTS step_runs_unit_step ON step_runs (pipeline, unit, step, id)"
_UNIT = re.compile(r"(\d{4})-(\d{2})(?:-(\d{2})(/.+)?)?")


def where() -> str:
    """The ledger as a person finds it: its file, or the state database and schema."""
    return state.describe()


def ledger_path() -> Path:
    return settings.data_dir() / "ledger.sqlite"


def redact(text: str) -> str:
    """Remove every configured password, and password=... pairs, from a message."""
    for name, value in os.environ.items():
        if name.endswith("PASSWORD") and len(value) >= 3:
            text = text.replace(value, "***")
    return re.sub(r"(password\s*[=:]\s*)\S+", r"\1***", text, flags=re.IGNORECASE)


# --- units ----------------------------------------------------------------------------


def unit_key(unit: dt.date | str) -> str:
    """The ledger's key of a unit: a date is its day; a key is checked and returned as is."""
    if isinstance(unit, dt.datetime):  # a date subclass whose isoformat carries the time
        raise TypeError(f"a unit is a date or a unit key, not a datetime: {unit!r}")
    if isinstance(unit, dt.date):
        return unit.isoformat()
    found = _UNIT.fullmatch(unit)
    try:
        if found is None:
            raise ValueError
        dt.date(int(found[1]), int(found[2]), int(found[3] or 1))
    except ValueError:
        raise ValueError(
            f"{unit!r} is not a unit key: a day YYYY-MM-DD, a month YYYY-MM or a run YYYY-MM-DD/<run id>"
        ) from None
    return unit


def month_key(year: int | str, month: int | str) -> str:
    return unit_key(f"{int(year):04d}-{int(month):02d}")


def run_key(day: dt.date, run_id: str) -> str:
    if not run_id:
        raise ValueError("a run key needs a run id")
    return f"{day.isoformat()}/{run_id}"


def kind_of(unit: str) -> str:
    """DAY, MONTH or RUN: what a unit key names."""
    key = unit_key(unit)
    return RUN if "/" in key else DAY if len(key) == 10 else MONTH


def day_of(unit: str) -> dt.date:
    """The day of a day or run key; the first day of a month."""
    key = unit_key(unit)
    return dt.date.fromisoformat(key[:10] if len(key) >= 10 else f"{key}-01")


# A pipeline's units as status groups them: a month pipeline's attempts recorded under a
# day (the month's first day, as ledgers before units did, or Airflow's logical date) count
# for that day's month.
_GROUP = {DAY: "unit", RUN: "unit", MONTH: "substr(unit, 1, 7)"}


# --- writing ----------------------------------------------------------------------------


def _connect() -> sqlite3.Connection:
    path = ledger_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=30)
    conn.execute(_TABLE)
    _migrate(conn)
    conn.execute(_INDEX)
    return conn


def _columns(conn: sqlite3.Connection) -> set[str]:
    return {row[1] for row in conn.execute("PRAGMA table_info(step_runs)")}


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a ledger written by an earlier version forward, in place, keeping its history."""
    legacy = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'runs'").fetchone()
    if _columns(conn) >= {"unit", "notes", "wall_s", "log"} and not legacy:
        return
    # Writers start at once (a day's extracts run side by side): one migrates, under the
    # write lock, and the others find the work done when they get it.
    conn.execute("BEGIN IMMEDIATE")
    try:
        columns = _columns(conn)
        if "unit" not in columns:  # the ledger before units keyed every attempt by a day
            conn.execute("ALTER TABLE step_runs RENAME COLUMN day TO unit")
            conn.execute("DROP INDEX IF EXISTS step_runs_day_step")
        for column, kind in (("notes", "TEXT"), ("wall_s", "REAL"), ("log", "TEXT")):
            if column not in columns:
                conn.execute(f"ALTER TABLE step_runs ADD COLUMN {column} {kind}")
        # The first ledger (one pipeline, statuses success/failed) was the table `runs`.
        legacy = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'runs'").fetchone()
        if legacy and not conn.execute("SELECT 1 FROM step_runs LIMIT 1").fetchone():
            conn.execute(
                "INSERT INTO step_runs (pipeline, unit, step, status, started_at, finished_at, duration_s, rows, error)"
                " SELECT 'northwind', day, step, status, started_at, finished_at, duration_s, rows, error FROM runs"
                " ORDER BY id"
            )
            conn.execute("ALTER TABLE runs RENAME TO runs_before_step_runs")
        conn.commit()
    except BaseException:
        conn.rollback()
        raise


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def record(
    pipeline: str,
    unit: dt.date | str,
    step: str,
    status: str,
    *,
    started_at: dt.datetime | None = None,
    rows: int | None = None,
    error: str | None = None,
    notes: str | None = None,
    log: Path | None = None,
) -> None:
    """One attempt of `step` for `unit` (a date is a day; else a day, month or run key)."""
    key = unit_key(unit)
    finished = now()
    duration = (finished - started_at).total_seconds() if started_at else None
    values = (
        pipeline,
        key,
        step,
        status,
        started_at.isoformat(timespec="seconds") if started_at else None,
        finished.isoformat(timespec="seconds"),
        round(duration, 2) if duration is not None else None,
        rows,
        redact(error)[-4000:] if error else None,
        redact(notes)[-4000:] if notes else None,
        str(log) if log else None,
    )
    insert = (
        "INSERT INTO step_runs"
        " (pipeline, unit, step, status, started_at, finished_at, duration_s, rows, error, notes, log{})"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?{})"
    )
    if state.shared():  # the machine that ran the attempt, too
        state.execute(insert.format(", host", ", ?"), (*values, state.host()))
        return
    with closing(_connect()) as conn, conn:
        conn.execute(insert.format("", ""), values)


def set_wall_seconds(pipeline: str, unit: dt.date | str, step: str, since: dt.datetime, seconds: float) -> None:
    """The step's wall time as `nw run` saw it (Meltano's start-up included) on its latest
    success since `since`: the commit task that records the success cannot see the start-up."""
    update = (
        "UPDATE step_runs SET wall_s = ? WHERE id = (SELECT max(id) FROM step_runs"
        " WHERE pipeline = ? AND unit = ? AND step = ? AND status = 'success' AND finished_at >= ?)"
    )
    values = (round(seconds, 2), pipeline, unit_key(unit), step, since.isoformat(timespec="seconds"))
    if state.shared():
        state.execute(update, values)
        return
    with closing(_connect()) as conn, conn:
        conn.execute(update, values)


# --- reading ----------------------------------------------------------------------------


def _read(query: str, params: Iterable[Any]) -> list[dict[str, Any]]:
    if state.shared():
        return state.execute(query, tuple(params))
    if not ledger_path().exists():
        return []
    # Read-only and without DDL on the file: status must work on a full disk too.
    with closing(sqlite3.connect(f"file:{ledger_path()}?mode=ro", uri=True, timeout=30)) as conn:
        conn.row_factory = sqlite3.Row
        try:
            if "unit" not in _columns(conn):
                # Not migrated yet (no writer has run since the upgrade): read it through a
                # view of this connection's own, which names its day column the unit.
                conn.execute("CREATE TEMP VIEW step_runs AS SELECT *, day AS unit FROM main.step_runs")
            return [dict(row) for row in conn.execute(query, tuple(params)).fetchall()]
        except sqlite3.OperationalError:  # an empty file: the schema was never written
            return []


def latest(pipeline: str, unit: dt.date | str) -> dict[str, dict[str, Any]]:
    """The most recent attempt of each step of the unit (exactly this key)."""
    rows = _read(
        "SELECT * FROM step_runs WHERE id IN"
        " (SELECT max(id) FROM step_runs WHERE pipeline = ? AND unit = ? GROUP BY step)",
        (pipeline, unit_key(unit)),
    )
    return {row["step"]: row for row in rows}


def success_since(pipeline: str, unit: dt.date | str, step: str, since: dt.datetime) -> bool:
    entry = latest(pipeline, unit).get(step)
    return bool(entry and entry["status"] == "success" and entry["finished_at"] >= since.isoformat(timespec="seconds"))


def _fold(rows: Iterable[dict[str, Any]], group: str) -> dict[str, dict[str, dict[str, Any]]]:
    """{group: {step: latest attempt}} from attempts in id order. Each latest attempt carries
    `attempts` (how many there were) and `failed_before` (how many failed in a row just before
    it, since the success before it): "success, 2 failed before" is not "3 successes"."""
    found: dict[str, dict[str, dict[str, Any]]] = {}
    for row in rows:
        steps = found.setdefault(row[group], {})
        before = steps.get(row["step"])
        if before is None:
            attempts, failed_before, unsuccessful = 1, 0, []
        else:
            attempts = before["attempts"] + 1
            failed_before = 0 if before["status"] == "success" else before["failed_before"] + 1
            unsuccessful = [] if before["status"] == "success" else [*before["unsuccessful"], before]
        # `unsuccessful`: those attempts themselves (an attempt whose machine died names it).
        steps[row["step"]] = {**row, "attempts": attempts, "failed_before": failed_before, "unsuccessful": unsuccessful}
    return found


def latest_by_unit(
    pipeline: str,
    kind: str = DAY,
    units: int | None = 7,
    *,
    steps: Iterable[str] | None = None,
    within: dt.date | str | None = None,
) -> dict[str, dict[str, dict[str, Any]]]:
    """{unit: {step: latest attempt}} of the pipeline's `units` most recent units, newest first.

    `kind` is the pipeline's unit: a MONTH pipeline's attempts are grouped by month, whatever
    key they were recorded under. `steps` limits the steps read (and so the units found);
    `within` limits the units to one key and the runs under it (a day's runs).
    Each attempt carries `attempts` and `failed_before` (see `_fold`).
    """
    group = _GROUP[kind]
    where, params = ["pipeline = ?"], [pipeline]
    if steps is not None:
        names = list(steps)
        where.append(f"step IN ({', '.join('?' * len(names))})")
        params += names
    if within is not None:
        key = unit_key(within)
        where.append(f"({group} = ? OR substr({group}, 1, ?) = ?)")
        params += [key, len(key) + 1, key + "/"]
    rows = _read(
        f"WITH attempts AS (SELECT *, {group} AS unit_group FROM step_runs WHERE {' AND '.join(where)}),"
        " units AS (SELECT unit_group, max(id) AS last_id FROM attempts GROUP BY unit_group"
        "   ORDER BY substr(unit_group, 1, 10) DESC, last_id DESC LIMIT ?)"
        " SELECT a.*, u.last_id FROM attempts a JOIN units u USING (unit_group) ORDER BY a.id",
        [*params, (None if state.shared() else -1) if units is None else units],
    )
    found = _fold(rows, "unit_group")
    # Newest first: by day (a run sorts with its day), then by the latest attempt.
    order = sorted(found, key=lambda g: (g[:10], next(iter(found[g].values()))["last_id"]), reverse=True)
    return {g: found[g] for g in order}


def latest_of_steps(pipeline: str, steps: Iterable[str]) -> dict[str, dict[str, Any]]:
    """{step: latest attempt whatever its unit}, with `failed_before`: for a step that runs for
    every unit at once (an incremental load of all months)."""
    names = list(steps)
    if not names:
        return {}
    # The latest attempt and the failures since the success before it: enough for the fold.
    rows = _read(
        "SELECT s.*, 'all' AS unit_group FROM step_runs s"
        f" WHERE s.pipeline = ? AND s.step IN ({', '.join('?' * len(names))}) AND s.id > coalesce(("
        "   SELECT max(p.id) FROM step_runs p WHERE p.pipeline = s.pipeline AND p.step = s.step"
        "   AND p.status = 'success' AND p.id < (SELECT max(l.id) FROM step_runs l"
        "     WHERE l.pipeline = s.pipeline AND l.step = s.step)), 0)"
        " ORDER BY s.id",
        [pipeline, *names],
    )
    return _fold(rows, "unit_group").get("all", {})


def latest_by_day(days: int) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """{pipeline: {unit: {step: latest attempt}}} for each pipeline's `days` most recent unit keys."""
    return {name: latest_by_unit(name, DAY, days) for name in pipelines()}


def pipelines() -> list[str]:
    """Every pipeline the ledger holds an attempt of."""
    return [row["pipeline"] for row in _read("SELECT DISTINCT pipeline FROM step_runs ORDER BY pipeline", ())]


def recent(pipeline: str, limit: int) -> list[dict[str, Any]]:
    """The pipeline's latest attempts of any unit, newest first (`day`: the unit, as before units)."""
    return _read("SELECT *, unit AS day FROM step_runs WHERE pipeline = ? ORDER BY id DESC LIMIT ?", (pipeline, limit))
