"""The ledger keys attempts by unit (day, month, run); a ledger written before units is migrated in place."""

from __future__ import annotations

import datetime as dt
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from northwind_elt.core import ledger
from northwind_elt.pipelines import REGISTRY
from northwind_elt.protocol import definition, units

DAY = dt.date(2024, 1, 15)
# The ledger as every version before units wrote it: attempts keyed by a day.
DAY_SCHEMA = """
CREATE TABLE step_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, pipeline TEXT NOT NULL, day TEXT NOT NULL, step TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('success', 'failed', 'interrupted')), started_at TEXT,
    finished_at TEXT NOT NULL, duration_s REAL, rows INTEGER, error TEXT, notes TEXT, wall_s REAL, log TEXT
);
CREATE INDEX step_runs_day_step ON step_runs (pipeline, day, step, id);
"""
OLD_ROWS = [
    ("northwind", "2024-01-15", "load", "failed", "2024-01-15T01:00:00+00:00", None, "cause"),
    ("northwind", "2024-01-15", "load", "success", "2024-01-15T02:00:00+00:00", 2155, None),
    ("padam", "2022-03-01", "padam-insert-month", "success", "2024-01-15T03:00:00+00:00", 612, None),
    ("padam", "2024-01-15", "padam-prepare", "success", "2024-01-15T04:00:00+00:00", None, None),
    ("ads", "2024-01-15", "ads-load", "success", "2024-01-15T05:00:00+00:00", 100, None),
]


def old_ledger() -> Path:
    path = ledger.ledger_path()
    path.parent.mkdir(parents=True)
    with sqlite3.connect(path) as conn:
        conn.executescript(DAY_SCHEMA)
        conn.executemany(
            "INSERT INTO step_runs (pipeline, day, step, status, finished_at, rows, error)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            OLD_ROWS,
        )
    return path


def table(path: Path) -> tuple[set[str], list[tuple], set[str]]:
    with sqlite3.connect(path) as conn:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(step_runs)")}
        key = "unit" if "unit" in columns else "day"
        rows = conn.execute(
            f"SELECT pipeline, {key}, step, status, finished_at, rows, error FROM step_runs ORDER BY id"
        ).fetchall()
        indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    return columns, rows, indexes


def test_a_ledger_keyed_by_day_is_read_as_is_and_migrated_by_the_next_write(data_dir: Path) -> None:
    path = old_ledger()
    # Read-only first (status on a full disk): the file is not touched, the history is there.
    assert ledger.latest("northwind", DAY)["load"]["rows"] == 2155
    assert ledger.latest_by_unit("northwind")["2024-01-15"]["load"]["failed_before"] == 1
    assert "2022-03" in ledger.latest_by_unit("padam", ledger.MONTH, steps=["padam-insert-month"])
    assert "day" in table(path)[0]
    # The next write migrates in place: the column renamed, every row kept, the index rebuilt.
    ledger.record("padam", "2022-03", "padam-export", "success")
    columns, rows, indexes = table(path)
    assert "unit" in columns and "day" not in columns
    assert rows[: len(OLD_ROWS)] == OLD_ROWS and rows[-1][:4] == ("padam", "2022-03", "padam-export", "success")
    assert "step_runs_unit_step" in indexes and "step_runs_day_step" not in indexes
    assert set(ledger.latest_by_unit("padam", ledger.MONTH, steps=["padam-insert-month", "padam-export"])) == {
        "2022-03"
    }


def test_writers_starting_together_migrate_once_and_lose_nothing(data_dir: Path) -> None:
    old_ledger()
    write = (
        "import sys; from northwind_elt.core import ledger;"
        " ledger.record('northwind', sys.argv[1], 'extract-csv', 'success', rows=int(sys.argv[2]))"
    )
    writers = [subprocess.Popen([sys.executable, "-c", write, f"2024-02-{n:02d}", str(n)]) for n in range(1, 7)]
    assert [w.wait(timeout=120) for w in writers] == [0] * 6
    columns, rows, _ = table(ledger.ledger_path())
    assert "unit" in columns and rows[: len(OLD_ROWS)] == OLD_ROWS
    assert sorted(r[5] for r in rows[len(OLD_ROWS) :]) == [1, 2, 3, 4, 5, 6]


def test_the_first_ledger_table_runs_is_still_carried_over(data_dir: Path) -> None:
    path = ledger.ledger_path()
    path.parent.mkdir(parents=True)
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE runs (id INTEGER PRIMARY KEY, day TEXT, step TEXT, status TEXT, started_at TEXT,"
            " finished_at TEXT, duration_s REAL, rows INTEGER, error TEXT)"
        )
        conn.execute(
            "INSERT INTO runs VALUES (1, '2023-12-01', 'load', 'success', NULL, '2023-12-01T01:00:00', 1, 9, NULL)"
        )
    ledger.record("northwind", DAY, "load", "success")
    assert ledger.latest("northwind", dt.date(2023, 12, 1))["load"]["rows"] == 9


@pytest.mark.parametrize(
    ("unit", "key", "kind"),
    [
        (DAY, "2024-01-15", ledger.DAY),
        ("2024-01-15", "2024-01-15", ledger.DAY),
        ("2022-03", "2022-03", ledger.MONTH),
        (
            "2024-01-15/scheduled__2024-01-15T12-12-00-00-00",
            "2024-01-15/scheduled__2024-01-15T12-12-00-00-00",
            ledger.RUN,
        ),
    ],
)
def test_a_unit_is_a_day_a_month_or_a_run(unit, key: str, kind: str) -> None:
    assert ledger.unit_key(unit) == key and ledger.kind_of(key) == kind


@pytest.mark.parametrize("unit", ["2022-13", "2024-02-30", "2024-1-5", "2024-01-15/", "", "march"])
def test_a_key_that_names_no_unit_is_refused(unit: str) -> None:
    with pytest.raises(ValueError, match="not a unit key"):
        ledger.unit_key(unit)
    with pytest.raises(TypeError):
        ledger.unit_key(dt.datetime(2024, 1, 15, 12))


def test_the_ledger_and_the_definitions_name_the_same_kinds_of_unit() -> None:
    assert (ledger.DAY, ledger.MONTH, ledger.RUN) == (definition.DAY, definition.MONTH, definition.RUN)
    assert {p.unit for p in REGISTRY.values()} <= {ledger.DAY, ledger.MONTH, ledger.RUN}


def test_each_pipeline_records_under_its_own_kind_of_unit(data_dir: Path) -> None:
    padam, ads, northwind = REGISTRY["padam"], REGISTRY["ads"], REGISTRY["northwind"]
    assert units.unit_of(padam, DAY) == "2024-01" and units.unit_of(ads, DAY, "r1") == "2024-01-15/r1"
    assert units.unit_of(ads, DAY) == units.unit_of(northwind, DAY) == "2024-01-15"
    units.record(padam, DAY, "padam-export", "success")  # a day of a month pipeline: its month
    units.record(padam, "2022-03-01", "padam-export", "success")
    units.record(ads, "2024-01-15/r1", "ads-load", "success")
    assert ledger.latest("padam", "2024-01") and ledger.latest("padam", "2022-03")
    assert ledger.latest("ads", "2024-01-15/r1")["ads-load"]["status"] == "success"
    with pytest.raises(ValueError, match="northwind records by day: '2024-01-15/r1' is a run"):
        units.record(northwind, "2024-01-15/r1", "load", "success")
    with pytest.raises(ValueError, match="ads records by run"):
        units.record(ads, "2024-01", "ads-archive", "success")
    with pytest.raises(KeyError, match="no step 'load'"):
        units.record(padam, "2022-03", "load", "success")


def test_recent_attempts_still_name_their_unit_as_day(data_dir: Path) -> None:
    # `nw ads status` reads `day` of the latest attempts.
    ledger.record("ads", "2024-01-15/r1", "ads-load", "success")
    assert ledger.recent("ads", 1)[0]["day"] == "2024-01-15/r1"
