"""The run ledger: per pipeline, day and step, each attempt's status, rows, duration and error.

A SQLite file under the data directory, so extract steps can record without the
analytics database being up. Two writers only: a step's commit (success) and the entry
point `nw run` (failed, interrupted). Passwords never reach it: errors pass through `redact`.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from northwind_elt.core import settings

STATUSES = ("success", "failed", "interrupted")

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS step_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    pipeline TEXT NOT NULL,
    day TEXT NOT NULL,
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
);
CREATE INDEX IF NOT EXISTS step_runs_day_step ON step_runs (pipeline, day, step, id);
"""


def ledger_path() -> Path:
    return settings.data_dir() / "ledger.sqlite"


def redact(text: str) -> str:
    """Remove every configured password, and password=... pairs, from a message."""
    for name, value in os.environ.items():
        if name.endswith("PASSWORD") and len(value) >= 3:
            text = text.replace(value, "***")
    return re.sub(r"(password\s*[=:]\s*)\S+", r"\1***", text, flags=re.IGNORECASE)


def _connect() -> sqlite3.Connection:
    path = ledger_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=30)
    conn.executescript(_SCHEMA)
    _migrate(conn)
    return conn


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a ledger written by an earlier version forward, keeping its history."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(step_runs)")}
    for column, kind in (("notes", "TEXT"), ("wall_s", "REAL"), ("log", "TEXT")):
        if column not in columns:
            conn.execute(f"ALTER TABLE step_runs ADD COLUMN {column} {kind}")
    # The first ledger (one pipeline, statuses success/failed) was the table `runs`.
    legacy = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'runs'").fetchone()
    if legacy and not conn.execute("SELECT 1 FROM step_runs LIMIT 1").fetchone():
        with conn:
            conn.execute(
                "INSERT INTO step_runs (pipeline, day, step, status, started_at, finished_at, duration_s, rows, error)"
                " SELECT 'northwind', day, step, status, started_at, finished_at, duration_s, rows, error FROM runs"
                " ORDER BY id"
            )
            conn.execute("ALTER TABLE runs RENAME TO runs_before_step_runs")


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def record(
    pipeline: str,
    day: dt.date,
    step: str,
    status: str,
    *,
    started_at: dt.datetime | None = None,
    rows: int | None = None,
    error: str | None = None,
    notes: str | None = None,
    log: Path | None = None,
) -> None:
    finished = now()
    duration = (finished - started_at).total_seconds() if started_at else None
    with closing(_connect()) as conn, conn:
        conn.execute(
            "INSERT INTO step_runs"
            " (pipeline, day, step, status, started_at, finished_at, duration_s, rows, error, notes, log)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                pipeline,
                day.isoformat(),
                step,
                status,
                started_at.isoformat(timespec="seconds") if started_at else None,
                finished.isoformat(timespec="seconds"),
                round(duration, 2) if duration is not None else None,
                rows,
                redact(error)[-4000:] if error else None,
                redact(notes)[-4000:] if notes else None,
                str(log) if log else None,
            ),
        )


def set_wall_seconds(pipeline: str, day: dt.date, step: str, since: dt.datetime, seconds: float) -> None:
    """The step's wall time as `nw run` saw it (Meltano's start-up included) on its latest
    success since `since`: the commit task that records the success cannot see the start-up."""
    with closing(_connect()) as conn, conn:
        conn.execute(
            "UPDATE step_runs SET wall_s = ? WHERE id = (SELECT max(id) FROM step_runs"
            " WHERE pipeline = ? AND day = ? AND step = ? AND status = 'success' AND finished_at >= ?)",
            (round(seconds, 2), pipeline, day.isoformat(), step, since.isoformat(timespec="seconds")),
        )


def _read(query: str, params: tuple) -> list[dict[str, Any]]:
    if not ledger_path().exists():
        return []
    # Read-only and without DDL: status must work on a full disk too.
    with closing(sqlite3.connect(f"file:{ledger_path()}?mode=ro", uri=True, timeout=30)) as conn:
        conn.row_factory = sqlite3.Row
        try:
            return [dict(row) for row in conn.execute(query, params).fetchall()]
        except sqlite3.OperationalError:  # an empty file: the schema was never written
            return []


def latest(pipeline: str, day: dt.date) -> dict[str, dict[str, Any]]:
    """The most recent attempt of each step of the day."""
    rows = _read(
        "SELECT * FROM step_runs WHERE id IN"
        " (SELECT max(id) FROM step_runs WHERE pipeline = ? AND day = ? GROUP BY step)",
        (pipeline, day.isoformat()),
    )
    return {row["step"]: row for row in rows}


def success_since(pipeline: str, day: dt.date, step: str, since: dt.datetime) -> bool:
    entry = latest(pipeline, day).get(step)
    return bool(entry and entry["status"] == "success" and entry["finished_at"] >= since.isoformat(timespec="seconds"))


def latest_by_day(days: int) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """{pipeline: {day: {step: latest attempt}}} for each pipeline's `days` most recent days.

    Each attempt carries `attempts`, how many times the step ran that day.
    """
    rows = _read(
        "WITH ranked AS (SELECT pipeline, day, DENSE_RANK() OVER (PARTITION BY pipeline ORDER BY day DESC) AS n"
        "   FROM (SELECT DISTINCT pipeline, day FROM step_runs)),"
        " last AS (SELECT max(id) AS id, count(*) AS attempts FROM step_runs GROUP BY pipeline, day, step)"
        " SELECT s.*, last.attempts FROM step_runs s JOIN last ON last.id = s.id"
        " JOIN ranked r ON r.pipeline = s.pipeline AND r.day = s.day WHERE r.n <= ?"
        " ORDER BY s.pipeline, s.day DESC, s.id",
        (days,),
    )
    overview: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    for row in rows:
        overview.setdefault(row["pipeline"], {}).setdefault(row["day"], {})[row["step"]] = row
    return overview


def recent(pipeline: str, limit: int) -> list[dict[str, Any]]:
    """The pipeline's latest attempts of any day, newest first."""
    return _read("SELECT * FROM step_runs WHERE pipeline = ? ORDER BY id DESC LIMIT ?", (pipeline, limit))
