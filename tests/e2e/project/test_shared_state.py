"""Shared state (NW_STATE_BACKEND=postgres): the ledger and the leases in the state database, so
machines with nothing else in common run the steps of one day, and a dead machine's lease expires.

"Machines" here are processes with their own NW_HOST_ID and their own data directory (staging,
logs, lock files); they share the session's Postgres (state, warehouse, Meltano's system
database) and the embedded S3 (the lake), as workers of a cluster would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from s3_support import EmbeddedS3, local_files
from support import PROJECT, Pipeline, wait_for

DAY = "2024-09-24"  # a day no other test of the session runs
STATE = {
    "NW_STATE_BACKEND": "postgres",
    "NW_STATE_PG_USER": "nw_state",
    "NW_STATE_PG_PASSWORD": "test-state-secret",
    "NW_STATE_PG_DATABASE": "nw_state",
    "NW_LEASE_SECONDS": "20",  # far beyond a keeper's renewal (every 5 s), even on a loaded machine
}


@pytest.fixture(scope="module")
def state_env(pipeline: Pipeline) -> dict[str, str]:
    """The session's server with the state database created (nw db up, once its password is set)."""
    env = {**pipeline.env, **STATE, "NW_STATE_PG_HOST": "127.0.0.1", "NW_STATE_PG_PORT": pipeline.env["PG_PORT"]}
    up = subprocess.run([*pipeline_nw(), "db", "up"], env=env, cwd=PROJECT, capture_output=True, text=True)
    assert up.returncode == 0, up.stdout + up.stderr
    port, password = env["PG_PORT"], STATE["NW_STATE_PG_PASSWORD"]
    # Meltano's system database (its runs and state) in the same database: any machine resumes any job.
    env["MELTANO_DATABASE_URI"] = f"postgresql+psycopg://nw_state:{password}@127.0.0.1:{port}/nw_state"
    return env


def pipeline_nw() -> list[str]:
    from support import NW

    return [NW]


def machine(env: dict[str, str], name: str, root: Path) -> Pipeline:
    data_dir = root / name / "data"
    return Pipeline({**env, "NW_HOST_ID": name, "NW_DATA_DIR": str(data_dir)}, data_dir)


HOLD = """
import sys
from northwind_elt.core import locks
locks.take_lease("shared-test-lease", "the test's step for 2024-09-24", owner=__import__("os").getpid())
print("taken", flush=True)
sys.stdin.read()  # held until the test closes stdin or kills this process
"""


@pytest.fixture
def holder(state_env: dict[str, str], tmp_path: Path) -> Iterator[subprocess.Popen]:
    """A process on machine 'a' holding a lease (its keeper renews it)."""
    env = {**state_env, "NW_HOST_ID": "a", "NW_DATA_DIR": str(tmp_path / "a")}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD], env=env, cwd=PROJECT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "taken"
    yield proc
    proc.kill()
    proc.wait()


def take_on(state_env: dict[str, str], host: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """Machine `host` tries to take the lease (and releases it at once when it got it)."""
    code = (
        "from northwind_elt.core import locks\n"
        "locks.take_lease('shared-test-lease', 'the rival', owner=__import__('os').getpid())\n"
        "locks.release_lease('shared-test-lease', owner=__import__('os').getpid())\n"
        "print('took it')\n"
    )
    env = {**state_env, "NW_HOST_ID": host, "NW_DATA_DIR": str(tmp_path / host)}
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=PROJECT, capture_output=True, text=True)


def expires_at(state_env: dict[str, str]):
    import psycopg

    port = state_env["PG_PORT"]
    with psycopg.connect(
        host="127.0.0.1", port=port, user="nw_state", password=STATE["NW_STATE_PG_PASSWORD"], dbname="nw_state"
    ) as conn:
        row = conn.execute("SELECT expires_at FROM nw_state.leases WHERE name = 'shared-test-lease'").fetchone()
    return row[0] if row else None


def test_a_live_machine_keeps_its_lease_and_a_dead_one_loses_it_when_it_expires(
    state_env: dict[str, str], holder: subprocess.Popen, tmp_path: Path
) -> None:
    refused = take_on(state_env, "b", tmp_path)
    assert refused.returncode != 0
    assert "the test's step for 2024-09-24 is already running (process" in refused.stderr
    assert f"process {holder.pid} on a, lease shared-test-lease in the state database" in refused.stderr
    # Its keeper renews it while the holder lives: the expiry moves forward.
    first = expires_at(state_env)
    wait_for(lambda: expires_at(state_env) > first, "the keeper to renew the lease")
    assert take_on(state_env, "b", tmp_path).returncode != 0
    # The machine dies (SIGKILL: nothing is released); its lease holds until it expires, then b takes it.
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    wait_for(lambda: take_on(state_env, "b", tmp_path).returncode == 0, "the dead machine's lease to expire")


def test_on_its_own_machine_a_dead_holder_is_taken_over_at_once(
    state_env: dict[str, str], holder: subprocess.Popen, tmp_path: Path
) -> None:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    took = take_on(state_env, "a", tmp_path)  # same host: the process is known dead, no wait for expiry
    assert took.returncode == 0, took.stderr


@pytest.fixture(scope="module")
def split_day(
    state_env: dict[str, str], pipeline: Pipeline, embedded_s3: EmbeddedS3, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Pipeline, Pipeline]:
    """The day's extracts on machine a, its load, transform and export on machine b."""
    root = tmp_path_factory.mktemp("machines")
    env = {**state_env, **embedded_s3.lake_env("shared-state")}
    a, b = machine(env, "a", root), machine(env, "b", root)
    a.run_ok("extract-postgres", DAY)
    a.run_ok("extract-csv", DAY)
    b.nw("--date", DAY, "run", "--from", "load")
    return a, b


def test_a_day_extracted_on_one_machine_is_loaded_and_exported_on_another(
    split_day: tuple[Pipeline, Pipeline], pipeline: Pipeline, embedded_s3: EmbeddedS3
) -> None:
    a, b = split_day
    finished = b.runs[-1]
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    # The same day run on one machine with the local defaults gives the same files, byte for byte.
    pipeline.run_ok("daily", DAY)
    assert embedded_s3.objects(f"shared-state/output/{DAY}/") == local_files(pipeline.data_dir / "output" / DAY)
    # Machine b's disk holds no ledger and no lake: the state is in Postgres, the lake in the bucket.
    assert not (b.data_dir / "ledger.sqlite").exists() and not (a.data_dir / "ledger.sqlite").exists()
    assert not (b.data_dir / "_manifests").exists()


def test_status_on_any_machine_shows_every_step_of_the_day(
    split_day: tuple[Pipeline, Pipeline], tmp_path: Path
) -> None:
    a, _ = split_day
    third = Pipeline({**a.env, "NW_HOST_ID": "c", "NW_DATA_DIR": str(tmp_path / "c")}, tmp_path / "c")
    status = third.nw("status", "--date", DAY)
    assert status.returncode == 0, status.stderr
    for step in ("extract-postgres", "extract-csv", "load", "transform", "export"):
        assert any(line.split()[:2] == [step, "success"] for line in status.stdout.splitlines()), status.stdout
    assert os.path.exists(a.data_dir / "logs" / DAY)  # each machine keeps its own logs
