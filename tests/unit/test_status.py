"""`nw status`: states of a day computed from real ledger entries and leases, in process."""

from __future__ import annotations

import datetime as dt
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from northwind_elt.core import ledger
from northwind_elt.core.day import DayLayout
from northwind_elt.core.locks import step_lock
from northwind_elt.entry import status
from northwind_elt.entry.cli import main

DAY = dt.date(2024, 1, 15)
NORTHWIND_STEPS = ("extract-postgres", "extract-csv", "load", "transform", "export")


def record_all(day: dt.date = DAY, steps=NORTHWIND_STEPS, status_of: dict[str, str] | None = None) -> None:
    for step in steps:
        state = (status_of or {}).get(step, "success")
        ledger.record("northwind", day, step, state, rows=10, error=None if state == "success" else f"{step} broke")


def verdict(day: dt.date = DAY) -> tuple[str, str | None]:
    return status.DayState.read("northwind", day.isoformat(), ledger.latest("northwind", day)).verdict()


def test_a_day_whose_steps_all_succeeded_is_done(data_dir: Path) -> None:
    record_all()
    assert verdict() == ("done", None)


def test_the_first_failed_step_names_the_rerun(data_dir: Path) -> None:
    record_all(status_of={"load": "failed"})
    assert verdict() == ("failed at load", "nw run --date 2024-01-15 --from load")


def test_an_extract_newer_than_the_load_makes_the_day_stale(data_dir: Path) -> None:
    record_all()
    # The ledger's timestamps have a one-second resolution: the rerun must be visibly later.
    with sqlite3.connect(ledger.ledger_path()) as conn:
        conn.execute("UPDATE step_runs SET finished_at = '2024-01-16T00:00:00+00:00'")
    ledger.record("northwind", DAY, "extract-csv", "success", rows=11)
    assert verdict() == ("stale: extract-csv newer than load", "nw run --date 2024-01-15 --from load")
    detail = "\n".join(status.day_detail(DAY))
    assert "Stale (extract-csv newer than load): rerun from there: nw run --date 2024-01-15 --from load" in detail


def test_a_day_with_steps_not_run_is_incomplete(data_dir: Path) -> None:
    record_all(steps=NORTHWIND_STEPS[:2])
    assert verdict() == ("incomplete", "nw run --date 2024-01-15 --from load")


def test_a_step_whose_run_lock_is_held_is_running_and_not_after(data_dir: Path) -> None:
    record_all(status_of={"load": "failed"})
    with step_lock(DayLayout.for_day(DAY), "run-northwind-load"):
        state, action = verdict()
        assert state == "running load" and action.startswith("wait: load runs in process ")
        assert "load             running" in "\n".join(status.day_detail(DAY))
    assert verdict()[0] == "failed at load"


def test_a_dead_process_lease_is_not_running(data_dir: Path) -> None:
    # A `meltano run` that died holding the begin lease of the day's load.
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    from northwind_elt.core.locks import take_lease

    take_lease("northwind-load-2024-01-15", "load for 2024-01-15", owner=proc.pid)
    assert status.DayState.read("northwind", "2024-01-15", {}).running
    proc.wait(timeout=30)
    assert not status.DayState.read("northwind", "2024-01-15", {}).running


def test_the_overview_shows_every_pipeline_and_day_with_its_todo(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record_all()
    record_all(DAY + dt.timedelta(days=1), status_of={"transform": "failed"})
    ledger.record("ads", DAY, "ads-load", "success", rows=100)
    ledger.record("ads", DAY, "ads-load", "failed", error="S3 down")
    ledger.record("padam", dt.date(2022, 3, 1), "padam-export", "success")
    assert main(["status", "--days", "7"]) == 0
    out = capsys.readouterr().out
    assert "northwind: last 2 days" in out and "ads: last 1 day" in out and "padam: last 1 day" in out
    assert "northwind 2024-01-16: failed at transform -> nw run --date 2024-01-16 --from transform" in out
    assert "ads 2024-01-15: failed at ads-load -> nw ads load --date 2024-01-15" in out
    assert "failed x2" in out  # two attempts of the day's ads-load, the latest failed
    assert not any(line != line.rstrip() for line in out.splitlines())
    # Only the most recent day with --days 1.
    assert main(["status", "--days", "1"]) == 0
    assert "2024-01-15" not in capsys.readouterr().out.split("ads:")[0]


def test_the_whole_error_of_a_step_is_shown_on_request(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    long_error = "cause line\n" + "x" * 3000 + "\nlast line of the output"
    ledger.record("northwind", DAY, "load", "failed", error=long_error, log=data_dir / "logs" / "load.log")
    assert main(["--date", "2024-01-15", "status", "--error", "load"]) == 0
    out = capsys.readouterr().out
    assert "last line of the output" in out and "x" * 3000 in out
    assert f"Full log: {data_dir / 'logs' / 'load.log'}" in out
    assert main(["--date", "2024-01-15", "status", "--error", "export"]) == 1
    assert main(["--date", "2024-01-15", "status", "--error", "nonsense"]) == 2


def test_a_ledger_written_before_the_wall_and_log_columns_is_migrated(data_dir: Path) -> None:
    ledger.ledger_path().parent.mkdir(parents=True)
    with sqlite3.connect(ledger.ledger_path()) as conn:
        conn.execute(
            "CREATE TABLE step_runs (id INTEGER PRIMARY KEY AUTOINCREMENT, pipeline TEXT NOT NULL, day TEXT NOT NULL,"
            " step TEXT NOT NULL, status TEXT NOT NULL, started_at TEXT, finished_at TEXT NOT NULL,"
            " duration_s REAL, rows INTEGER, error TEXT, notes TEXT)"
        )
        conn.execute(
            "INSERT INTO step_runs (pipeline, day, step, status, finished_at, duration_s)"
            " VALUES ('northwind', '2024-01-15', 'load', 'success', '2024-01-15T01:00:00+00:00', 1.5)"
        )
    started = ledger.now()
    ledger.record("northwind", DAY, "transform", "success", started_at=started)
    ledger.set_wall_seconds("northwind", DAY, "transform", started, 7.25)
    entries = ledger.latest("northwind", DAY)
    assert entries["load"]["duration_s"] == 1.5 and entries["transform"]["wall_s"] == 7.25


def test_a_failed_load_after_a_missing_extract_reruns_from_the_extract(data_dir: Path) -> None:
    record_all(steps=("extract-postgres",))
    ledger.record("northwind", DAY, "load", "failed", error="load refused: extract-csv did not complete")
    assert verdict() == ("failed at load", "nw run --date 2024-01-15 --from extract-csv")


def test_a_killed_process_not_yet_reaped_holds_no_lease(data_dir: Path) -> None:
    from northwind_elt.core.locks import take_lease

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    take_lease("run-northwind-load-2024-01-15", "load for 2024-01-15", owner=proc.pid)
    assert status.DayState.read("northwind", "2024-01-15", {}).running
    proc.kill()
    # Not waited for: a zombie until reaped. psutil sees it as such once the kernel has.
    killed = psutil.Process(proc.pid)
    while killed.status() != psutil.STATUS_ZOMBIE:
        time.sleep(0.01)
    assert not status.DayState.read("northwind", "2024-01-15", {}).running
    proc.wait()
