"""Per step-and-day locks, so two runs of the same step for the same day never interleave."""

from __future__ import annotations

import fcntl
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from northwind_elt import settings
from northwind_elt.day import DayLayout


class AlreadyRunning(RuntimeError):
    pass


@contextmanager
def step_lock(layout: DayLayout, name: str, *, wait: bool = False) -> Iterator[None]:
    """Hold an exclusive flock on (name, day); the kernel drops it if the process dies."""
    path = layout.lock_file(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise AlreadyRunning(
                f"{name} for {layout.iso} is already running (lock {path}); "
                "wait for it to finish, then rerun if it failed"
            ) from None
        yield


@contextmanager
def plugin_lock(step: str) -> Iterator[None]:
    """Wait for any run of `step` for another day: they share Meltano's plugin run directories."""
    path = settings.data_dir() / ".locks" / f"meltano-{step}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting: {step} is running for another day (lock {path})", file=sys.stderr, flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield
