"""Shared state (NW_STATE_BACKEND=postgres): the leases in the state database; a live machine keeps
its lease, a dead one's expires. "Machines" are processes with their own NW_HOST_ID and data
directory. (A day run across two machines: tests/e2e/northwind/test_lake_s3.py.)
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import PROJECT, STATE, wait_for

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
