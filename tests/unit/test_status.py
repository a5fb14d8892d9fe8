"""`nw status`: states of a unit (day, month, run) computed from real ledger entries and leases, in process."""

from __future__ import annotations

import datetime as dt
import re
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
    return status.UnitState.read("northwind", day.isoformat(), ledger.latest("northwind", day)).verdict()


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
    assert status.UnitState.read("northwind", "2024-01-15", {}).running
    proc.wait(timeout=30)
    assert not status.UnitState.read("northwind", "2024-01-15", {}).running


def test_the_overview_shows_every_pipeline_and_day_with_its_todo(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record_all()
    record_all(DAY + dt.timedelta(days=1), status_of={"transform": "failed"})
    ledger.record("ads", DAY, "ads-load", "success", rows=100)
    ledger.record("ads", DAY, "ads-load", "failed", error="S3 down")
    ledger.record("padam", dt.date(2022, 3, 1), "padam-export", "success")
    # The ledger records extracts this test never wrote to the lake: status says so, and fails.
    assert main(["status", "--days", "7"]) == 1
    out = capsys.readouterr().out
    assert f"Lake: {data_dir} (local disk)" in out
    manifest = data_dir / "_manifests" / "2024-01-16" / "extract-postgres.json"
    assert f"LOST: {manifest}, the commit of northwind extract-postgres for 2024-01-16; rerun: nw run" in out
    assert "northwind: last 2 days" in out and "ads: last 1 day" in out and "padam: last 1 month" in out
    assert "northwind 2024-01-16: failed at transform -> nw run --date 2024-01-16 --from transform" in out
    assert "ads 2024-01-15: failed at ads-load -> nw ads load --date 2024-01-15" in out
    # Two attempts of the day's ads-load, the latest failed: its outcome, never an attempt count
    # (the one before it succeeded, so none "failed before").
    assert "x2" not in out and re.search(r"^\s*2024-01-15\s+failed\s+-\s+failed at ads-load$", out, re.M), out
    assert not any(line != line.rstrip() for line in out.splitlines())
    # Only the most recent day with --days 1.
    assert main(["status", "--days", "1"]) == 1
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
    assert status.UnitState.read("northwind", "2024-01-15", {}).running
    proc.kill()
    # Not waited for: a zombie until reaped. psutil sees it as such once the kernel has.
    killed = psutil.Process(proc.pid)
    while killed.status() != psutil.STATUS_ZOMBIE:
        time.sleep(0.01)
    assert not status.UnitState.read("northwind", "2024-01-15", {}).running
    proc.wait()


# --- units: months, runs, failures before the latest outcome --------------------------


def padam_month(month: str, *steps: str) -> None:
    for step in steps:
        ledger.record("padam", month, step, "success", rows=612 if step == "padam-insert-month" else None)


def test_padam_is_shown_by_month_with_prepare_in_every_month_and_no_wall_clock_row(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    padam_month("2022-02", "padam-insert-month", "padam-prepare", "padam-export")
    padam_month("2022-03", "padam-insert-month")
    # prepare loads every month at once, recorded under a day of its own (as `nw padam prepare` did).
    ledger.record("padam", dt.date(2024, 6, 14), "padam-prepare", "success")
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert "padam: last 2 months" in out and "2024-06" not in out
    months = {line.split()[0]: line.split() for line in out.splitlines() if re.match(r"^\s*2022-0\d\s", line)}
    assert months["2022-02"][1:] == ["success", "success", "success", "done"]
    assert months["2022-03"][1:] == ["success", "success", "-", "incomplete"]
    assert "padam 2022-03: incomplete -> nw padam export 2022 3" in out
    # Generated again after the latest prepare: the month's stats are stale; the other month is not.
    with sqlite3.connect(ledger.ledger_path()) as conn:
        conn.execute("UPDATE step_runs SET finished_at = '2024-01-01T00:00:00+00:00'")
    padam_month("2022-02", "padam-insert-month")
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert "padam 2022-02: stale: padam-insert-month newer than padam-prepare -> nw padam prepare" in out
    assert "padam 2022-03: incomplete -> nw padam export 2022 3" in out


def test_a_failed_prepare_is_one_todo_for_every_month_it_covers(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    padam_month("2022-02", "padam-insert-month")
    padam_month("2022-03", "padam-insert-month")
    ledger.record("padam", "2022-03", "padam-prepare", "failed", error="warehouse down")
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert "padam 2022-03, 2022-02: failed at padam-prepare -> nw padam prepare" in out


def test_a_month_pipeline_attempt_recorded_under_a_day_counts_for_its_month(data_dir: Path) -> None:
    # Ledgers before units (and Airflow's logical date) keyed PADAM's months by their first day.
    ledger.record("padam", dt.date(2022, 3, 1), "padam-insert-month", "success")
    ledger.record("padam", "2022-03", "padam-export", "failed", error="disk full")
    units = ledger.latest_by_unit("padam", ledger.MONTH, 7)
    assert list(units) == ["2022-03"] and set(units["2022-03"]) == {"padam-insert-month", "padam-export"}
    detail = "\n".join(status.day_detail(dt.date(2022, 3, 20)))
    assert "Pipeline padam, month 2022-03 (the month of 2022-03-20)" in detail
    assert re.search(r"^padam-export\s+failed", detail, re.M)
    assert "Failed at padam-export; rerun: nw padam export 2022 3" in detail
    text, code = status.step_error(dt.date(2022, 3, 20), "padam-export")
    assert code == 0 and text.startswith("padam-export for 2022-03: failed") and "disk full" in text


def test_ads_is_shown_by_run_and_day_and_reruns_the_failed_run(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger.record("ads", "2024-01-15/run-a", "ads-load", "success", rows=100)
    ledger.record("ads", "2024-01-15/run-b", "ads-load", "failed", error="S3 down\nRerun: ...")
    ledger.record("ads", DAY, "ads-archive", "success", rows=0)
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert "ads: last 2 runs and 1 day" in out
    assert re.search(r"^\s*day\s+run\s+ads-load\s+ads-archive\s+state$", out, re.M), out
    assert re.search(r"^\s*2024-01-15\s+run-a\s+success\s+-\s+done$", out, re.M), out
    assert re.search(r"^\s*2024-01-15\s+-\s+success\s+done$", out, re.M), out  # the day's archive
    # A run pipeline's steps each have a schedule of their own: a run without an archive is no gap.
    assert "incomplete" not in out
    assert "ads 2024-01-15/run-b: failed at ads-load -> nw ads load --date 2024-01-15 --run-id run-b" in out
    detail = "\n".join(status.day_detail(DAY))
    assert "Pipeline ads, day 2024-01-15: 2 runs" in detail
    assert re.search(r"^run-b\s+ads-load\s+failed", detail, re.M)
    assert re.search(r"^-\s+ads-archive\s+success", detail, re.M)
    assert "whole error: nw status --date 2024-01-15 --error ads-load --run run-b" in detail
    assert "Run run-b: failed at ads-load; rerun: nw ads load --date 2024-01-15 --run-id run-b" in detail
    # The whole error of one run, or the day's latest attempt.
    assert main(["--date", "2024-01-15", "status", "--error", "ads-load", "--run", "run-a"]) == 0
    assert capsys.readouterr().out.startswith("ads-load for 2024-01-15/run-a: success")
    assert main(["--date", "2024-01-15", "status", "--error", "ads-load"]) == 0
    assert "S3 down" in capsys.readouterr().out


def test_a_step_that_failed_twice_then_succeeded_reads_as_one_success_with_two_failures_before(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for outcome in ("success", "failed", "failed", "success"):
        ledger.record("northwind", DAY, "load", outcome, rows=12_345, error="broke" if outcome == "failed" else None)
    entry = ledger.latest_by_unit("northwind")["2024-01-15"]["load"]
    assert (entry["status"], entry["attempts"], entry["failed_before"]) == ("success", 4, 2)
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert "success (2 failed before)" in out and "x4" not in out and "x3" not in out
    detail = "\n".join(status.day_detail(DAY))
    assert re.search(r"^load\s+success \(2 failed before\)\s+12,345\s", detail, re.M), detail
    # Failing again: the latest outcome, and the failures in a row before it (none: a success).
    ledger.record("northwind", DAY, "load", "failed", error="broke")
    ledger.record("northwind", DAY, "load", "interrupted", error="stopped by SIGTERM")
    assert "interrupted (1 failed before)" in "\n".join(status.day_detail(DAY))


def test_the_overview_and_the_detail_write_numbers_alike(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    started = ledger.now()
    ledger.record("northwind", DAY, "load", "success", rows=1_234_567, started_at=started)
    ledger.set_wall_seconds("northwind", DAY, "load", started, 1234.56)
    assert main(["status"]) == 0
    assert "1,234,567 rows 1,234.6 s" in capsys.readouterr().out
    assert re.search(r"^load\s+success\s+1,234,567\s+1,234.6\s", "\n".join(status.day_detail(DAY)), re.M)


def test_a_check_of_the_entry_point_is_a_column_and_a_state_of_its_units(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    padam_month("2022-02", "padam-insert-month", "padam-prepare", "padam-export")
    padam_month("2022-03", "padam-insert-month", "padam-prepare", "padam-export")
    extras = {
        "padam": status.Extra(
            column="reconciled",
            checks={
                "2022-01": status.Check("ok"),  # generated before the ledger knew PADAM
                "2022-02": status.Check("ok", detail="production 612 rows"),
                "2022-03": status.Check("stale", "not reconciled (stale)", "nw padam prepare --full-refresh"),
            },
            notes=["  a line under the table"],
        )
    }
    assert status.overview(7, extras) == 0
    out = capsys.readouterr().out
    assert "padam: last 3 months" in out and "  a line under the table" in out
    assert re.search(r"^\s*month\s+padam-insert-month\s+padam-prepare\s+padam-export\s+reconciled\s+state$", out, re.M)
    assert re.search(r"^\s*2022-02\s+success\s+success\s+success\s+ok\s+done$", out, re.M), out
    assert re.search(r"^\s*2022-01\s+-\s+-\s+-\s+ok\s+ok, nothing in the ledger$", out, re.M), out
    assert "padam 2022-03: not reconciled (stale) -> nw padam prepare --full-refresh" in out
    detail = "\n".join(status.day_detail(dt.date(2022, 2, 1), extras))
    assert "  reconciled: ok (production 612 rows)" in detail and "All steps done." in detail


def test_a_running_step_of_every_month_shows_in_each_month(data_dir: Path) -> None:
    from northwind_elt.core.locks import step_lock

    padam_month("2022-03", "padam-insert-month")
    # prepare covers every month: its lock is the pipeline's, not a month's.
    with step_lock("padam", "run-padam-padam-prepare"):
        state, action = status.UnitState.read("padam", "2022-03", ledger.latest("padam", "2022-03")).verdict()
        assert state == "running padam-prepare" and action.startswith("wait: padam-prepare runs in process ")


def test_a_success_after_a_dead_attempt_says_where_that_attempt_died(data_dir: Path) -> None:
    ledger.record("northwind", DAY, "load", "success", rows=1)
    ledger.record("northwind", DAY, "load", "failed", error="Airflow: heartbeat missed\nmore")
    ledger.record(
        "northwind", DAY, "load", "interrupted", error="the attempt on worker-1 (process 41) stopped without committing"
    )
    ledger.record("northwind", DAY, "load", "success", rows=2)
    detail = "\n".join(status.day_detail(DAY))
    assert re.search(r"^load\s+success \(2 failed before\)\s+2\s", detail, re.M), detail
    assert "  load: before it, failed: Airflow: heartbeat missed\n" in detail + "\n", detail
    assert "  load: before it, interrupted: the attempt on worker-1 (process 41) stopped" in detail, detail
    # Only those since the success before: the first success's history is not repeated.
    assert detail.count("before it") == 2
