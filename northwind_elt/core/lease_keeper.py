"""Renews the shared leases of one live process (NW_STATE_BACKEND=postgres).

A lease in the state database expires unless renewed. Its owner (an `nw run`, or the
`meltano run` whose `begin` task took it) does not renew it itself: the task that took it ends
at once. So taking a lease starts this keeper, detached: every quarter of NW_LEASE_SECONDS it
extends every lease of its owner (host, pid and start time), and it exits when the owner is
gone. A machine that dies takes its keepers with it, so its leases expire; a SIGKILLed owner's
keeper stops renewing within a quarter of the lease. One keeper per owner: a second one started
for the same owner finds the first one's lock and exits.

Run as `python -m northwind_elt.core.lease_keeper PID STARTED`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from northwind_elt.core import locks, settings, state
from northwind_elt.core.errors import PipelineError


def _lock_file(owner: int, started: float) -> Path:
    folder = settings.data_dir() / ".locks" / "lease-keepers"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{owner}-{started:.2f}.lock"


def _locked(handle) -> bool:
    """Take the keeper's lock file without waiting; False when another keeper holds it."""
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def ensure(owner: int, started: float) -> None:
    """Start the keeper of `owner` unless one runs (it holds its lock file)."""
    with open(_lock_file(owner, started), "a") as handle:
        if not _locked(handle):
            return  # its keeper runs
        fcntl.flock(handle, fcntl.LOCK_UN)
    keeper = subprocess.Popen(
        [sys.executable, "-m", "northwind_elt.core.lease_keeper", str(owner), repr(started)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # outlives the task that took the lease, not its owner
        env=os.environ.copy(),
    )
    # Never waited for, on purpose: without this, Python warns "subprocess ... is still running"
    # when this process exits, and that line lands in every task's log.
    keeper.returncode = 0


def keep(owner: int, started: float) -> None:
    path = _lock_file(owner, started)
    with open(path, "a") as handle:
        if not _locked(handle):
            return  # another keeper serves this owner
        seconds = state.lease_seconds()
        owner_process = locks.Holder(owner, started, "its owner")  # no host: alive means this pid lives
        try:
            while owner_process.alive():
                # The database away for a moment: try again at the next turn.
                with contextlib.suppress(psycopg.Error, PipelineError):
                    state.execute(
                        "UPDATE leases SET expires_at = now() + make_interval(secs => ?)"
                        " WHERE host = ? AND pid = ? AND started = ?",
                        (seconds, state.host(), owner, started),
                    )
                time.sleep(seconds / 4)
        finally:
            path.unlink(missing_ok=True)


if __name__ == "__main__":
    keep(int(sys.argv[1]), float(sys.argv[2]))
