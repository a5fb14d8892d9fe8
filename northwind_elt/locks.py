"""Per step-and-day locks, so two runs of the same step for the same day never interleave."""

from __future__ import annotations

import fcntl
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from northwind_elt import settings
from northwind_elt.day import DayLayout


class AlreadyRunning(RuntimeError):
    pass


def _try_flock(handle: IO[str], *, wait: bool) -> bool:
    """Exclusive flock; the kernel drops it when the process dies. False if busy and not waiting."""
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    return True


def _open_lock(path: Path) -> IO[str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("w")


@contextmanager
def step_lock(layout: DayLayout, name: str, *, wait: bool = False) -> Iterator[None]:
    """Hold (name, day); a second holder fails at once unless `wait`."""
    path = layout.lock_file(name)
    with _open_lock(path) as handle:
        if not _try_flock(handle, wait=wait):
            raise AlreadyRunning(
                f"{name} for {layout.iso} is already running (lock {path}); "
                "wait for it to finish, then rerun if it failed"
            )
        yield


@contextmanager
def plugin_lock(step: str) -> Iterator[None]:
    """Wait for any run of `step` for another day: they share Meltano's plugin run directories."""
    path = settings.data_dir() / ".locks" / f"meltano-{step}.lock"
    with _open_lock(path) as handle:
        if not _try_flock(handle, wait=False):
            print(f"waiting: {step} is running for another day (lock {path})", file=sys.stderr, flush=True)
            _try_flock(handle, wait=True)
        yield
