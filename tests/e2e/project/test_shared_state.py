"""Shared state (NW_STATE_BACKEND=postgres): the leases in the state database; a live machine keeps
its lease, a dead one's expires. "Machines" are processes with their own NW_HOST_ID and data
directory. (A day run across two machines: tests/e2e/northwind/test_lake_s3.py.)
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import PROJECT, STATE, machine, wait_for

HOLD = """
import sys
from northwind_elt.core import locks
locks.take_lease(sys.argv[1], "the test's step for 2024-09-24", owner=__import__("os").getpid())
print("taken", flush=True)
sys.stdin.read()  # held until the test closes stdin or kills this process
"""


def hold(state_env: dict[str, str], tmp_path: Path, name: str) -> subprocess.Popen:
    """A process on machine 'a' holding the lease `name` (its keeper renews it)."""
    env = {**state_env, "NW_HOST_ID": "a", "NW_DATA_DIR": str(tmp_path / "a")}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, name],
        env=env,
        cwd=PROJECT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "taken"
    return proc


@pytest.fixture
def holder(state_env: dict[str, str], tmp_path: Path) -> Iterator[subprocess.Popen]:
    proc = hold(state_env, tmp_path, "shared-test-lease")
    yield proc
    proc.kill()
    proc.wait()


def take_on(
    state_env: dict[str, str], host: str, tmp_path: Path, name: str = "shared-test-lease"
) -> subprocess.CompletedProcess:
    """Machine `host` tries to take the lease (and releases it at once when it got it)."""
    code = (
        "from northwind_elt.core import locks\n"
        f"locks.take_lease({name!r}, 'the rival', owner=__import__('os').getpid())\n"
        f"locks.release_lease({name!r}, owner=__import__('os').getpid())\n"
        "print('took it')\n"
    )
    env = {**state_env, "NW_HOST_ID": host, "NW_DATA_DIR": str(tmp_path / host)}
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=PROJECT, capture_output=True, text=True)


def state_db(state_env: dict[str, str]):
    import psycopg

    password = STATE["NW_STATE_PG_PASSWORD"]
    return psycopg.connect(
        host="127.0.0.1", port=state_env["PG_PORT"], user="nw_state", password=password, dbname="nw_state"
    )


def expires_at(state_env: dict[str, str], name: str = "shared-test-lease"):
    with state_db(state_env) as conn:
        row = conn.execute("SELECT expires_at FROM nw_state.leases WHERE name = %s", (name,)).fetchone()
    return row[0] if row else None


def expired(state_env: dict[str, str], name: str) -> bool:
    with state_db(state_env) as conn:
        return conn.execute("SELECT expires_at < now() FROM nw_state.leases WHERE name = %s", (name,)).fetchone()[0]


def test_a_live_machine_keeps_its_lease_and_its_own_host_takes_it_at_once_when_it_died(
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
    # The process dies (SIGKILL: nothing is released). Another machine waits for the lease to
    # expire (next test); its own host knows the process is dead and takes it at once.
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert take_on(state_env, "b", tmp_path).returncode != 0
    took = take_on(state_env, "a", tmp_path)
    assert took.returncode == 0, took.stderr


def test_a_step_whose_machine_died_is_taken_over_and_the_dead_attempt_is_in_the_status(
    state_env: dict[str, str], tmp_path: Path
) -> None:
    day = "2024-09-30"  # a day no other test of the session runs
    lease = f"northwind-extract-csv-{day}"  # what `nw begin extract-csv` takes for the day
    dead = hold(state_env, tmp_path, lease)
    assert "already running" in take_on(state_env, "b", tmp_path, lease).stderr
    dead.send_signal(signal.SIGKILL)  # machine a dies in the middle of the step
    dead.wait()
    assert "already running" in take_on(state_env, "b", tmp_path, lease).stderr  # until the lease expires
    wait_for(lambda: expired(state_env, lease), "machine a's lease to expire")
    b = machine(state_env, "b", tmp_path)
    b.run_ok("extract-csv", day)
    with state_db(state_env) as conn:
        rows = conn.execute(
            "SELECT status, host, error FROM nw_state.step_runs WHERE pipeline = 'northwind' AND unit = %s"
            " AND step = 'extract-csv' ORDER BY id",
            (day,),
        ).fetchall()
    assert [(status, host) for status, host, _ in rows] == [("interrupted", "b"), ("success", "b")]
    assert f"the attempt on a (process {dead.pid}) stopped without committing" in rows[0][2]
    status = b.nw("status", "--date", day)
    assert re.search(r"^extract-csv\s+success \(1 failed before\)", status.stdout, re.M), status.stdout
