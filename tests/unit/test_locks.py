"""Leases: held while their process lives, refused to others, taken over once it is gone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from northwind_elt.core.locks import AlreadyRunning, lease_held, release_lease, take_lease


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
