"""A bare `meltano run JOB` without RUN_DATE is refused naming the job that was run (Meltano
tells a task neither its job nor its run: the refusing task reads its parent's command line)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import NW

from northwind_elt.protocol.meltano import invoking_meltano_run


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["/p/.venv/bin/python", "/p/.venv/bin/meltano", "run", "daily"], ["daily"]),
        (
            ["meltano", "--log-level", "debug", "run", "--force", "--run-id", "x", "extract-csv", "load"],
            ["extract-csv", "load"],
        ),
        (
            ["meltano", "run", "--state-id-suffix=s", "--timeout", "60", "tap-x", "target-y", "nw--n:export"],
            ["tap-x", "target-y", "nw--n:export"],
        ),
        (["python", "-m", "meltano", "run", "people-daily"], ["people-daily"]),
        (["meltano", "invoke", "nw--northwind", "begin", "load"], []),
        (["/usr/bin/python3", "-m", "pytest", "run"], []),
        ([], []),
    ],
)
def test_the_names_a_meltano_run_was_given_are_read_from_its_command_line(argv: list[str], names: list[str]) -> None:
    assert invoking_meltano_run(argv) == names


def test_a_task_of_meltano_run_daily_without_a_day_names_the_job_daily(tmp_path: Path) -> None:
    # A stand-in for Meltano: a process named meltano, run as `meltano run --force daily`, whose child
    # is the job's first task (Meltano starts each task as its child).
    launcher = tmp_path / "meltano"
    launcher.write_text(
        f"#!{sys.executable}\nimport subprocess, sys\n"
        f"sys.exit(subprocess.run([{NW!r}, 'begin', 'extract-postgres']).returncode)\n"
    )
    launcher.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "RUN_DATE"}
    env |= {"MELTANO_PROJECT_ROOT": str(tmp_path), "NW_DATA_DIR": str(tmp_path / "data")}  # no .env there
    result = subprocess.run([str(launcher), "run", "--force", "daily"], env=env, capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.startswith(
        "ERROR: extract-postgres started without a day: RUN_DATE is not set, and a task never decides what today is"
    ), result.stderr
    assert (
        "Fix: run the job through the entry point (`nw run --date YYYY-MM-DD daily`, or `nw run daily` for today), "
        "or set the day yourself: RUN_DATE=YYYY-MM-DD meltano run daily"
    ) in result.stderr
    assert "meltano run extract-postgres" not in result.stderr
    assert not (tmp_path / "data").exists()


def test_a_task_run_alone_names_its_own_job(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "RUN_DATE"}
    env |= {"MELTANO_PROJECT_ROOT": str(tmp_path), "NW_DATA_DIR": str(tmp_path / "data")}
    result = subprocess.run([NW, "begin", "people-load"], env=env, capture_output=True, text=True)
    assert result.returncode == 1
    assert "RUN_DATE=YYYY-MM-DD meltano run people-load" in result.stderr, result.stderr
