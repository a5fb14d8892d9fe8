"""Locks and leases: held while their process lives, refused to others, taken over once it is
gone; keyed by a day, a month, a run or a pipeline (a step over every unit)."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

from northwind_elt.core.day import DayLayout
from northwind_elt.core.locks import (
    AlreadyRunning,
    StopRequested,
    lease_held,
    meltano_locks_dir,
    plugin_lock,
    release_lease,
    running,
    step_lock,
    take_lease,
)


@pytest.fixture
def holder() -> subprocess.Popen:
    """A live process to hold leases: it waits on its stdin until the test closes it."""
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    yield proc
    proc.stdin.close()
    proc.wait(timeout=30)


def test_a_live_holder_keeps_its_lease(data_dir: Path, holder: subprocess.Popen) -> None:
    take_lease("extract-2024-01-15", "extract for 2024-01-15", owner=holder.pid)
    with pytest.raises(AlreadyRunning, match=f"extract for 2024-01-15 is already running \\(process {holder.pid}"):
        take_lease("extract-2024-01-15", "extract for 2024-01-15")
    assert lease_held("extract-2024-01-15").pid == holder.pid
    # Releasing someone else's lease does nothing.
    release_lease("extract-2024-01-15")
    assert lease_held("extract-2024-01-15") is not None


def test_a_dead_holders_lease_is_taken_over(data_dir: Path, holder: subprocess.Popen) -> None:
    take_lease("load-2024-01-15", "load for 2024-01-15", owner=holder.pid)
    holder.stdin.close()
    holder.wait(timeout=30)
    assert lease_held("load-2024-01-15") is None
    take_lease("load-2024-01-15", "load for 2024-01-15")
    assert lease_held("load-2024-01-15") is not None
    release_lease("load-2024-01-15")
    assert lease_held("load-2024-01-15") is None


def test_a_step_lock_of_a_day_keeps_its_file_and_lease_names(data_dir: Path) -> None:
    layout = DayLayout.for_day(dt.date(2024, 1, 15))
    with step_lock(layout, "run-northwind-load"):
        assert (data_dir / ".locks" / "run-northwind-load-2024-01-15.lock").exists()
        assert running("northwind", "load", "2024-01-15").pid == os.getpid()
        refused = pytest.raises(AlreadyRunning, match="run-northwind-load for 2024-01-15 is already running")
        with refused, step_lock(layout, "run-northwind-load"):
            pass
    assert running("northwind", "load", "2024-01-15") is None


@pytest.mark.parametrize(
    ("unit", "lock_file"),
    [
        ("2022-03", "run-padam-padam-export-2022-03.lock"),
        ("padam", "run-padam-padam-export-padam.lock"),
        # A run key's '/' never becomes a folder.
        (
            "2024-01-15/scheduled__2024-01-15T12-12-00",
            "run-padam-padam-export-2024-01-15%2Fscheduled__2024-01-15T12-12-00.lock",
        ),
    ],
)
def test_a_step_lock_of_a_month_run_or_pipeline_key_is_one_flat_file(data_dir: Path, unit: str, lock_file: str) -> None:
    with step_lock(unit, "run-padam-padam-export"):
        assert [p.name for p in (data_dir / ".locks").glob("*.lock")] == [lock_file]
        assert running("padam", "padam-export", unit).pid == os.getpid()
        refused = pytest.raises(AlreadyRunning, match=f"run-padam-padam-export for {unit} is already running")
        with refused, step_lock(unit, "run-padam-padam-export"):
            pass
    assert running("padam", "padam-export", unit) is None


def test_a_second_holder_is_told_what_runs(data_dir: Path) -> None:
    with (
        step_lock("padam", "run-padam-padam-prepare", what="padam prepare"),
        pytest.raises(AlreadyRunning) as refused,
        step_lock("padam", "run-padam-padam-prepare", what="padam prepare"),
    ):
        pass
    assert str(refused.value).startswith("padam prepare is already running (lock ")
    assert str(refused.value).endswith("; wait for it to finish, then rerun if it failed")


def test_a_plugin_lock_wait_says_what_it_waits_for_and_ends_on_a_stop_request(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MELTANO_PROJECT_ROOT", str(tmp_path / "project"))
    path = meltano_locks_dir() / "meltano-padam-prepare.lock"
    path.parent.mkdir(parents=True)
    # Another process holds the job's lock (a running prepare) until the test closes its stdin.
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline() == "held\n"
        asked: list[bool] = []

        def stop_requested() -> bool:
            asked.append(True)
            return True  # a signal came while waiting

        waiting = "padam export: waiting for the running padam prepare (or export) to finish"
        with pytest.raises(StopRequested), plugin_lock("padam-prepare", stop_requested, waiting=waiting):
            pass
        assert asked == [True]
        assert capsys.readouterr().err == f"{waiting} (lock {path})\n"
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    with plugin_lock("padam-prepare"):  # released with its holder
        pass


HOLD_LOCK = """
import sys
from filelock import FileLock
lock = FileLock(sys.argv[1])
lock.acquire()
print("held", flush=True)
sys.stdin.read()
"""
