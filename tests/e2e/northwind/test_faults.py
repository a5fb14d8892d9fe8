"""Faults: killed runs, broken sources, damaged files, concurrent runs, drift, full disks,
secrets. Each is a real run against the session's embedded Postgres."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import psycopg
import pyarrow.parquet as pq
import pytest
from support import NORTHWIND_DAY, PROJECT, SOURCE_CSV, Pipeline, csv_env, free_port, partition_file, wait_for

HEADER = "order_id,product_id,unit_price,quantity,discount"


def admin(pipeline: Pipeline, dbname: str = "northwind") -> psycopg.Connection:
    return pipeline.admin(dbname)


def start(pipeline: Pipeline, *args: str, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    return pipeline.start(*args, extra_env=extra_env)


def kill_group_when(proc: subprocess.Popen, ready, what: str = "the point to kill it at") -> None:
    """SIGKILL the whole process group (nw, meltano, tap, target) once `ready()` is true."""
    wait_for(ready, what, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)


def visible_partitions(pipeline: Pipeline, day: str) -> list[Path]:
    return sorted(pipeline.data_dir.glob(f"postgres/*/{day}/*")) + sorted(pipeline.data_dir.glob(f"csv/{day}/*"))


def ledger_status(pipeline: Pipeline, day: str) -> str:
    return pipeline.nw("--date", day, "status").stdout


# 1. SIGKILL during extract-postgres --------------------------------------------------


def test_sigkill_during_extract_leaves_nothing_visible_and_a_rerun_succeeds(pipeline: Pipeline) -> None:
    day = "2024-04-01"
    staging = pipeline.data_dir / ".staging" / "extract-postgres" / day
    proc = start(pipeline, "--date", day, "run", "extract-postgres")
    # Once the tap and target are writing: a batch file, a temporary or a finished table file.
    kill_group_when(proc, lambda: any(p.name != "_begin.json" for p in staging.rglob("*") if p.is_file()))
    assert visible_partitions(pipeline, day) == []
    assert not (pipeline.data_dir / "_manifests" / day).exists()
    # `meltano run` has a session of its own (so nw can stop it cleanly): a SIGKILL of nw's
    # group leaves it running, and `nw status` says so. It either finishes or is gone.
    wait_for(lambda: "extract-postgres running" not in ledger_status(pipeline, day), "the orphaned job to end")
    assert re.search(r"^extract-postgres (not run|success)", ledger_status(pipeline, day), re.M)
    pipeline.run_ok("extract-postgres", day)
    assert "extract-postgres success" in ledger_status(pipeline, day)
    assert len(list(pipeline.data_dir.glob(f"postgres/*/{day}/*.manifest.json"))) >= 13


# 2. SIGKILL during load --------------------------------------------------------------


def test_sigkill_during_load_keeps_the_old_or_the_new_day_never_a_mix(
    pipeline: Pipeline, extracted_day: str, tmp_path: Path
) -> None:
    day = extracted_day  # extracted (section 6): loaded whole here, then its CSV replaced by a shorter one
    pipeline.run_ok("load", day)
    old = 2155
    shorter = tmp_path / "order_details.csv"
    shorter.write_text("\n".join(SOURCE_CSV.read_text().splitlines()[:1001]) + "\n")  # 1000 lines: the "new" day
    pipeline.run_ok("extract-csv", day, extra_env=csv_env(shorter))

    def day_state() -> tuple[int, int]:
        with pipeline.analytics() as conn:
            return conn.execute(
                "SELECT count(*), count(DISTINCT _load_id) FROM raw.order_details WHERE _day = %s", [day]
            ).fetchone()

    intent = pipeline.data_dir / ".staging" / "load" / day / "intent.json"
    for delay in (0.0, 0.5, 1.5):  # kill at different points: tap start, mid-load, publish
        proc = start(pipeline, "--date", day, "run", "load")
        kill_group_when(proc, lambda: intent.exists())
        time.sleep(delay)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        rows, loads = day_state()
        assert (rows, loads) in ((old, 1), (1000, 1)), "analytics must hold the old day or the new one"
        # `meltano run` has a session of its own: killing nw's group leaves it to finish, holding
        # the load's lease until then. The next attempt starts once it is gone, not after a guess.
        wait_for(
            lambda: not re.search(r"^load\s+running", ledger_status(pipeline, day), re.M), "the orphaned load to end"
        )
        rows, loads = day_state()
        assert (rows, loads) in ((old, 1), (1000, 1)), "analytics must hold the old day or the new one"
    pipeline.run_ok("load", day)
    assert day_state() == (1000, 1)


# 3. Source down, wrong password ------------------------------------------------------


@pytest.mark.parametrize("fault", ["wrong-password", "server-down"])
def test_unreachable_source_names_step_and_host_and_hides_the_password(pipeline: Pipeline, fault: str) -> None:
    secret = "s3cret-Wrong-pw-4711"
    port = pipeline.env["SOURCE_PG_PORT"] if fault == "wrong-password" else str(free_port())
    result = pipeline.run(
        "extract-postgres", "2024-04-03", extra_env={"SOURCE_PG_PASSWORD": secret, "SOURCE_PG_PORT": port}
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "FAILED: step 'extract-postgres' for 2024-04-03" in result.stderr
    assert f"Check the source database postgresql://northwind_reader@127.0.0.1:{port}/northwind" in result.stderr
    assert ("password authentication failed" if fault == "wrong-password" else "Connection refused") in output
    assert secret not in output
    assert secret not in ledger_status(pipeline, "2024-04-03")
    for log in (pipeline.data_dir / "logs").rglob("*.log"):
        assert secret not in log.read_text(), log
    assert secret.encode() not in (pipeline.data_dir / "ledger.sqlite").read_bytes()


def test_a_stopped_embedded_server_is_named_with_the_command_that_starts_it(pipeline: Pipeline, tmp_path: Path) -> None:
    # The embedded server's port with nothing on it and its data directory never started: what a
    # user sees after `nw db stop`. Checking the settings would go in a circle: they are right.
    port = str(free_port())
    result = pipeline.run(
        "extract-postgres",
        "2024-04-04",
        extra_env={"PG_PORT": port, "SOURCE_PG_PORT": port, "NW_PGDATA": str(tmp_path / "pgdata")},
    )
    assert result.returncode != 0
    assert "FAILED: step 'extract-postgres' for 2024-04-04" in result.stderr
    assert result.stderr.count("nw db up") == 1, result.stderr
    fix_line = next(line for line in result.stderr.splitlines() if "nw db up" in line)
    assert f"127.0.0.1:{port}" in fix_line or f"port {port}" in fix_line, fix_line
    assert "rerun: nw run --date 2024-04-04 --from extract-postgres" in result.stderr


# 4 and 5. CSV inputs: refused with file and line, or accepted ------------------------

BAD_CSVS = {
    "extra column": (f"{HEADER},note\n10248,11,14,12,0,x\n", "line 1 (header): unexpected column(s) ['note']"),
    "missing column": (
        "order_id,product_id,unit_price,quantity\n10248,11,14,12\n",
        "line 1 (header): missing column(s) ['discount']",
    ),
    "non-numeric quantity": (
        f"{HEADER}\n10248,11,14,12,0\n10248,42,9.8,ten,0\n",
        "line 3, column 'quantity': 'ten' is not an integer",
    ),
    "empty file": ("", "the file is empty"),
    "only a header": (f"{HEADER}\n", "only a header line, no data rows"),
    "invalid UTF-8": (f"{HEADER}\n10248,11,14,12,0\n10248,42,9.8,1\udcff0,0\n", "line 3: invalid UTF-8 byte(s)"),
    "short row": (f"{HEADER}\n10248,11,14,12,0\n10248,42,9.8\n", "line 3: Expected 5 columns, got 3"),
}


@pytest.mark.parametrize("case", sorted(BAD_CSVS))
def test_bad_csv_is_rejected_with_file_and_line_and_no_partition(pipeline: Pipeline, tmp_path: Path, case) -> None:
    content, message = BAD_CSVS[case]
    path = tmp_path / "order_details.csv"
    path.write_bytes(content.encode("utf-8", "surrogateescape"))
    day = "2024-04-04"
    result = pipeline.run("extract-csv", day, extra_env=csv_env(path))
    assert result.returncode != 0
    assert f"{path}: {message}" in result.stderr, result.stderr[-2000:]
    assert not (pipeline.data_dir / "csv" / day).exists()
    assert not (pipeline.data_dir / "_manifests" / day / "extract-csv.json").exists()


def test_bom_crlf_and_quoted_fields_are_accepted_with_the_same_values(
    pipeline: Pipeline, northwind_day: Pipeline, tmp_path: Path
) -> None:
    lines = SOURCE_CSV.read_text().splitlines()
    quoted = [lines[0]] + [",".join(f'"{v}"' for v in line.split(",")) for line in lines[1:]]
    path = tmp_path / "order_details.csv"
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(quoted).encode() + b"\r\n")
    pipeline.run_ok("extract-csv", "2024-04-05", extra_env=csv_env(path))
    odd = pq.read_table(partition_file(pipeline.data_dir, "csv", "order_details", "2024-04-05"))
    # The plain file as the session's day extracted it (tests/conftest.py).
    plain = pq.read_table(partition_file(pipeline.data_dir, "csv", "order_details", NORTHWIND_DAY))
    assert odd.num_rows == len(lines) - 1
    assert odd.equals(plain)


def test_a_comma_inside_a_quoted_number_is_not_a_number(pipeline: Pipeline, tmp_path: Path) -> None:
    path = tmp_path / "order_details.csv"
    path.write_text(f'{HEADER}\n10248,11,"1,4",12,0\n')
    result = pipeline.run("extract-csv", "2024-04-07", extra_env=csv_env(path))
    assert result.returncode != 0
    assert f"{path}: line 2, column 'unit_price': '1,4' is not a number" in result.stderr


# 6. Damaged step-1 files -------------------------------------------------------------


@pytest.fixture(scope="module")
def extracted_day(pipeline: Pipeline) -> str:
    day = "2024-04-08"
    pipeline.extract_ok(day)
    return day


def _corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "message"),
    # A truncated file fails the same sha256 comparison as this corrupted one.
    [(_corrupt, "checksum mismatch"), ("rows", "row count mismatch")],
)
def test_load_refuses_a_damaged_partition_and_names_the_file(
    pipeline: Pipeline, extracted_day: str, damage, message: str
) -> None:
    day = extracted_day
    target = partition_file(pipeline.data_dir, "postgres", "orders", day)
    # What the load trusts: the step manifest, which names each file with its rows and sha256.
    manifest_path = pipeline.data_dir / "_manifests" / day / "extract-postgres.json"
    original, original_manifest = target.read_bytes(), manifest_path.read_text()
    try:
        if damage == "rows":
            manifest = json.loads(original_manifest)
            manifest["tables"]["orders"]["rows"] += 1
            manifest_path.write_text(json.dumps(manifest))
        else:
            damage(target)
        result = pipeline.run("load", day)
        assert result.returncode != 0
        assert f"{message}" in result.stderr and str(target) in result.stderr, result.stderr[-2000:]
        assert f"nw run --date {day} --from extract-postgres" in result.stderr
    finally:
        target.write_bytes(original)
        manifest_path.write_text(original_manifest)


# 7. Two runs of the same step and day at once ---------------------------------------


def test_a_second_concurrent_run_of_the_same_step_and_day_fails_clearly(pipeline: Pipeline, extracted_day: str) -> None:
    day = extracted_day  # its extract-csv stands: the load below checks both extracts
    # The first run blocks on a locked source table until the test lets it go: the rivals
    # below meet it mid-extract, however fast or slow the machine is.
    with pipeline.table_locked("northwind", "region"):
        first = start(pipeline, "--date", day, "run", "extract-postgres")
        wait_for(lambda: pipeline.waiting_on_a_lock("northwind_reader"), "the first extract waits on the lock", first)
        second = pipeline.run("extract-postgres", day)
        # A plain `meltano run` of the same job and day: the step's lease turns it away.
        rival = pipeline.meltano("run", "--force", "extract-postgres", day=day)
    output, _ = first.communicate(timeout=600)
    assert first.returncode == 0, output[-3000:]
    assert second.returncode != 0
    assert f"run-northwind-extract-postgres for {day} is already running" in second.stderr
    assert rival.returncode != 0
    assert "already running" in rival.stdout + rival.stderr
    pipeline.run_ok("load", day)  # the gate re-verifies every file: nothing was corrupted


def test_two_direct_meltano_runs_for_two_days_never_publish_an_empty_step(pipeline: Pipeline) -> None:
    first_day, other_day = "2024-04-13", "2024-04-14"
    with pipeline.table_locked("northwind", "region"):
        first = pipeline.start_meltano("run", "--force", "extract-postgres", day=first_day)
        wait_for(lambda: pipeline.waiting_on_a_lock("northwind_reader"), "the first extract waits on the lock", first)
        other = pipeline.meltano("run", "--force", "extract-postgres", day=other_day)
    output, _ = first.communicate(timeout=600)
    assert first.returncode == 0, output[-3000:]
    assert other.returncode != 0
    assert "meltano job extract-postgres (for another day) is already running" in other.stdout + other.stderr
    assert not (pipeline.data_dir / "_manifests" / other_day / "extract-postgres.json").exists()
    published = json.loads((pipeline.data_dir / "_manifests" / first_day / "extract-postgres.json").read_text())
    with pipeline.source() as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert set(published["tables"]) == tables


# 9 and 10. Schema drift and a new table ---------------------------------------------


def test_added_column_and_new_table_flow_through_and_a_dropped_column_is_kept_as_null(pipeline: Pipeline) -> None:
    with admin(pipeline) as conn:
        conn.execute("ALTER TABLE shippers ADD COLUMN IF NOT EXISTS rating smallint DEFAULT 5")
        conn.execute("CREATE TABLE IF NOT EXISTS warehouses (warehouse_id smallint PRIMARY KEY, city text)")
        conn.execute("INSERT INTO warehouses VALUES (1, 'Lyon'), (2, 'Graz') ON CONFLICT DO NOTHING")
    try:
        day = "2024-04-10"
        pipeline.load_ok(day)  # raw is what this test checks: no transform or export
        assert "rating" in pq.read_schema(partition_file(pipeline.data_dir, "postgres", "shippers", day)).names
        assert pq.read_table(partition_file(pipeline.data_dir, "postgres", "warehouses", day)).num_rows == 2
        with pipeline.analytics() as conn:
            assert conn.execute("SELECT DISTINCT rating FROM raw.shippers WHERE _day = %s", [day]).fetchall() == [(5,)]
            assert conn.execute("SELECT count(*) FROM raw.warehouses WHERE _day = %s", [day]).fetchone() == (2,)
        with admin(pipeline) as conn:
            conn.execute("ALTER TABLE shippers DROP COLUMN rating")
        later = "2024-04-11"
        pipeline.load_ok(later)
        with pipeline.analytics() as conn:
            assert conn.execute("SELECT DISTINCT rating FROM raw.shippers WHERE _day = %s", [later]).fetchall() == [
                (None,)
            ]
            assert conn.execute("SELECT DISTINCT rating FROM raw.shippers WHERE _day = %s", [day]).fetchall() == [(5,)]
    finally:
        with admin(pipeline) as conn:
            conn.execute("ALTER TABLE shippers DROP COLUMN IF EXISTS rating")
            conn.execute("DROP TABLE IF EXISTS warehouses")


# 11. The disk fills up during a write ------------------------------------------------


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_a_full_disk_fails_the_step_and_leaves_no_partial_partition(pipeline: Pipeline, tmp_path: Path) -> None:
    mount = tmp_path / "small-disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mount)], check=True)
    try:
        day = "2024-04-12"
        result = pipeline.run("extract-postgres", day, extra_env={"NW_DATA_DIR": str(mount)})
        output = result.stdout + result.stderr
        assert result.returncode != 0
        assert "No space left on device" in output
        assert f"FAILED: step 'extract-postgres' for {day}" in result.stderr
        assert f"Free space on the disk holding {mount}" in result.stderr
        assert list(mount.glob(f"postgres/*/{day}/*")) == []
        assert not (mount / "_manifests" / day / "extract-postgres.json").exists()
    finally:
        subprocess.run(["umount", str(mount)], check=False)


# 12. Secrets -------------------------------------------------------------------------


def test_no_password_in_config_and_env_file_is_ignored_and_extraction_is_read_only(pipeline: Pipeline) -> None:
    texts = [
        PROJECT / "meltano.yml",
        *(PROJECT / "plugins").glob("*.meltano.yml"),
        *(PROJECT / "pipelines").glob("*.meltano.yml"),
        PROJECT / "docker-compose.yml",
        PROJECT / "transform" / "profiles.yml",
    ]
    for path in texts:
        for secret in (pipeline.env["SOURCE_PG_PASSWORD"], pipeline.env["ANALYTICS_PG_PASSWORD"], "change-me"):
            assert secret not in path.read_text(), path
    ignored = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=PROJECT)
    assert ignored.returncode == 0, ".env must be gitignored"
    with pipeline.source() as conn:
        for statement in (
            "INSERT INTO region VALUES (99, 'x')",
            "CREATE TABLE intruder (id int)",
            "UPDATE orders SET freight = 0",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
