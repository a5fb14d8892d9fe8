"""The day protocol in real runs: clean stops, pinned days, hostile names, leftovers, messages."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from support import PROJECT, SOURCE_CSV, Pipeline, csv_env, wait_for


def descendants(proc: subprocess.Popen) -> list[psutil.Process]:
    return psutil.Process(proc.pid).children(recursive=True)


def stop_with(proc: subprocess.Popen, signum: int) -> tuple[int, str, list[psutil.Process]]:
    """Signal `nw` alone (not its group) and wait for it; its children must be gone too."""
    children = descendants(proc)
    assert children, "nw should be running meltano and its plugins"
    proc.send_signal(signum)
    output, _ = proc.communicate(timeout=300)
    alive = [child for child in children if child.is_running() and child.status() != psutil.STATUS_ZOMBIE]
    return proc.returncode, output, alive


def day_files(pipeline: Pipeline, day: str) -> list[str]:
    found = [*pipeline.data_dir.glob(f"postgres/*/{day}/*"), *pipeline.data_dir.glob(f"csv/{day}/*")]
    found += pipeline.data_dir.glob(f"_manifests/{day}/*")
    return sorted(str(p) for p in found)


@dataclass(frozen=True)
class LoadedDay:
    day: str
    project_staging_before: list[Path]


def project_staging() -> list[Path]:
    folder = PROJECT / "data" / ".staging"
    return sorted(folder.rglob("*")) if folder.exists() else []


@pytest.fixture(scope="module")
def loaded_day(pipeline: Pipeline) -> Iterator[LoadedDay]:
    """A day extracted and loaded once, with a source table named with a space and capitals (kept
    until the module ends): the batch-file, step-manifest and name tests read it as the steps left
    it; the signal during a load interrupts a reload of it, the failed dbt test reloads its CSV."""
    before = project_staging()
    day = "2024-06-07"
    with pipeline.admin() as conn:
        conn.execute('CREATE TABLE "Order Items" ("Item Id" int PRIMARY KEY, "Label" text)')
        conn.execute("""INSERT INTO "Order Items" VALUES (1, 'one'), (2, 'two'), (3, NULL)""")
    try:
        pipeline.load_ok(day)
        yield LoadedDay(day, before)
    finally:
        with pipeline.admin() as conn:
            conn.execute('DROP TABLE IF EXISTS "Order Items"')


def test_batch_files_live_under_the_data_directory_and_are_removed(pipeline: Pipeline, loaded_day: LoadedDay) -> None:
    after = project_staging()
    assert after == loaded_day.project_staging_before, (
        "nothing may be written under the project's data/ when NW_DATA_DIR is elsewhere"
    )
    for step in ("extract-postgres", "extract-csv", "load"):
        assert not (pipeline.data_dir / ".staging" / step / loaded_day.day).exists(), step


def test_the_step_manifest_lists_the_tables_it_published(pipeline: Pipeline, loaded_day: LoadedDay) -> None:
    manifest = json.loads((pipeline.data_dir / "_manifests" / loaded_day.day / "extract-postgres.json").read_text())
    with pipeline.source() as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert set(manifest["tables"]) == set(manifest["expected_tables"]) == tables


# SIGINT and SIGTERM go through the same handler (protocol.meltano.Signals): Ctrl-C is tried during an
# extract, Airflow's and systemd's SIGTERM during a load, so each signal and each kind of
# step is covered once without running every combination.
@pytest.mark.parametrize("signum", [signal.SIGINT])
def test_a_signal_during_extract_stops_every_process_and_records_interrupted(pipeline: Pipeline, signum) -> None:
    day = "2024-06-02"
    with pipeline.table_locked("northwind", "region"):
        proc = pipeline.start("--date", day, "run", "extract-postgres")
        wait_for(lambda: pipeline.waiting_on_a_lock("northwind_reader"), "the extract blocks on the lock", proc)
        code, output, alive = stop_with(proc, signum)
    assert code == 128 + signum
    assert alive == [], f"processes outlived nw: {alive}"
    assert f"INTERRUPTED: step 'extract-postgres' for {day} ({signal.Signals(signum).name})" in output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output
    assert re.search(r"^extract-postgres\s+interrupted", pipeline.status(day), re.MULTILINE)
    assert day_files(pipeline, day) == []
    # The locks went with the processes: a rerun starts at once and cleans the leftovers.
    pipeline.run_ok("extract-postgres", day)
    assert re.search(r"^extract-postgres\s+success", pipeline.status(day), re.MULTILINE)
    assert not (pipeline.data_dir / ".staging" / "extract-postgres" / day).exists()


@pytest.mark.parametrize("signum", [signal.SIGTERM])
def test_a_signal_during_load_keeps_the_old_day_and_the_rerun_clears_staging(
    pipeline: Pipeline, loaded_day: LoadedDay, signum
) -> None:
    day = loaded_day.day
    staging = f"raw_staging_{day}"
    with pipeline.analytics() as conn:
        before = conn.execute("SELECT load_id FROM raw._loaded_days WHERE day = %s", [day]).fetchone()
    # The day is staged, then the swap into raw waits for the lock: the signal comes mid-swap.
    with pipeline.table_locked("analytics", "raw.orders"):
        proc = pipeline.start("--date", day, "run", "load")
        wait_for(lambda: pipeline.waiting_on_a_lock("analytics"), "the load blocks on the lock", proc)
        code, output, alive = stop_with(proc, signum)
    assert code == 128 + signum
    assert alive == []
    assert "Traceback" not in output
    assert re.search(r"^load\s+interrupted", pipeline.status(day), re.MULTILINE)
    with pipeline.analytics() as conn:
        assert conn.execute("SELECT load_id FROM raw._loaded_days WHERE day = %s", [day]).fetchone() == before
        assert conn.execute("SELECT count(DISTINCT _load_id) FROM raw.orders WHERE _day = %s", [day]).fetchone() == (1,)
        left = conn.execute(f'SELECT count(*) FROM "{staging}".orders').fetchone()[0]
    assert left == 830, "the interrupted attempt left its staged rows (the case the rerun must clean)"
    pipeline.run_ok("load", day)
    with pipeline.analytics() as conn:
        assert conn.execute("SELECT to_regnamespace(%s)", [staging]).fetchone() == (None,)
        rows, loads = conn.execute(
            "SELECT count(*), count(DISTINCT _load_id) FROM raw.orders WHERE _day = %s", [day]
        ).fetchone()
        assert conn.execute("SELECT load_id FROM raw._loaded_days WHERE day = %s", [day]).fetchone() != before
    assert loads == 1 and rows == 830


def test_a_failed_extract_lets_the_extract_beside_it_finish_and_stops_the_day_before_the_load(
    pipeline: Pipeline,
) -> None:
    """`nw run daily` runs the two extracts side by side (entry/run.py `plan`). extract-postgres
    fails at its commit (a source column named like the one the load adds); extract-csv, started
    beside it, still commits; nothing after them runs, and the rerun starts at the failed step."""
    day = "2024-06-10"
    with pipeline.admin() as conn:
        conn.execute("CREATE TABLE clashing_day (id int PRIMARY KEY, _day date)")
    try:
        result = pipeline.run("daily", day)
    finally:
        with pipeline.admin() as conn:
            conn.execute("DROP TABLE clashing_day")
    assert result.returncode != 0
    lines = {line.split()[1]: line.split()[-1] for line in result.stdout.splitlines() if line.startswith("northwind ")}
    assert lines == {"extract-postgres": "failed", "extract-csv": "success"}, result.stdout
    # Each step's line once (issue 27), however long the two ran side by side.
    assert sum(line.startswith("northwind ") for line in result.stdout.splitlines()) == 2, result.stdout
    assert f"FAILED: step 'extract-postgres' for {day}" in result.stderr
    cause = f"Cause: extract-postgres for {day}: source table 'clashing_day' cannot be extracted: column _day: the load"
    assert cause in result.stderr, result.stderr
    assert f"Fix the cause, then rerun: nw run --date {day} --from extract-postgres" in result.stderr
    assert "==> done" not in result.stdout
    status = pipeline.status(day)
    assert re.search(r"extract-csv\s+success", status) and re.search(r"extract-postgres\s+failed", status), status
    assert not re.search(r"\bload\s+(success|failed)", status), status
    logs = pipeline.data_dir / "logs" / day
    assert len(list(logs.glob("extract-postgres-*.log"))) == len(list(logs.glob("extract-csv-*.log"))) == 1


def test_a_task_started_without_a_pinned_day_refuses(pipeline: Pipeline) -> None:
    env = {k: v for k, v in pipeline.env.items() if k != "RUN_DATE"}
    result = subprocess.run(
        [str(PROJECT / ".venv" / "bin" / "meltano"), "run", "extract-csv"],
        env=env,
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert "extract-csv started without a day: RUN_DATE is not set" in result.stdout + result.stderr


def test_tables_named_with_spaces_and_capitals_load_and_a_path_in_a_name_is_refused(
    pipeline: Pipeline, loaded_day: LoadedDay
) -> None:
    with pipeline.analytics() as conn:
        got = conn.execute(
            'SELECT "Item Id"::int, "Label" FROM raw."Order Items" WHERE _day = %s ORDER BY 1', [loaded_day.day]
        )
        assert got.fetchall() == [(1, "one"), (2, "two"), (3, None)]
    try:
        with pipeline.admin() as conn:
            conn.execute('CREATE TABLE "../../fc_escape" (id int)')
        refused = pipeline.run("extract-postgres", "2024-06-06")
        assert refused.returncode != 0
        assert "source table '../../fc_escape' cannot be extracted" in refused.stderr
        assert "rename the table, or revoke SELECT on it" in refused.stderr
        assert not list(pipeline.data_dir.parent.glob("*fc_escape*"))
        assert not list(pipeline.data_dir.rglob("*fc_escape*"))
    finally:
        with pipeline.admin() as conn:
            conn.execute('DROP TABLE IF EXISTS "../../fc_escape"')


def test_a_failed_dbt_test_is_named_in_the_cause_and_the_status(
    pipeline: Pipeline, loaded_day: LoadedDay, tmp_path
) -> None:
    day = loaded_day.day  # its extract-postgres stands; the CSV is extracted again with a duplicated line
    lines = SOURCE_CSV.read_text().splitlines()
    duplicated = tmp_path / "order_details.csv"
    duplicated.write_text("\n".join([*lines, lines[1]]) + "\n")
    pipeline.run_ok("extract-csv", day, extra_env=csv_env(duplicated))
    pipeline.run_ok("load", day)
    failed = pipeline.run("transform", day)
    assert failed.returncode != 0
    cause = next(line for line in failed.stderr.splitlines() if line.startswith("Cause: "))
    assert "dbt build failed:" in cause and "unique_combination_of_columns" in cause
    assert "Block run completed" not in cause
    assert "unique_combination_of_columns" in pipeline.status(day)
    # The clean file repairs the day (and the other days' transforms with it).
    pipeline.run_ok("extract-csv", day)
    pipeline.run_ok("load", day)
    pipeline.run_ok("transform", day)


def test_db_up_never_changes_a_password_and_says_which_variable_disagrees(pipeline: Pipeline) -> None:
    wrong = "not-the-password-42"
    result = pipeline.nw("db", "up", extra_env={"SOURCE_PG_PASSWORD": wrong})
    assert result.returncode != 0
    assert "SOURCE_PG_PASSWORD does not match the password role 'northwind_reader' has" in result.stderr
    assert "nw db set-passwords" in result.stderr
    assert wrong not in result.stderr
    with pipeline.source() as conn:  # the configured password still works
        assert conn.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.skipif(os.geteuid() != 0, reason="the server runs as another user only when started by root")
def test_as_root_a_data_directory_other_users_cannot_enter_is_refused_with_a_reason(
    pipeline: Pipeline, tmp_path
) -> None:
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    closed.chmod(0o700)
    result = pipeline.nw("db", "up", extra_env={"NW_PGDATA": str(closed / "pgdata"), "PG_PORT": "1"})
    assert result.returncode != 0
    assert "cannot reach" in result.stderr and "is closed to other users" in result.stderr
    assert "Clone the project into a directory other users can enter" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(closed.iterdir()), "no half-made cluster may be left"
