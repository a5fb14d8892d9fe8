"""Locks: one run per step and unit, and one Meltano run per plugin set across units.

A unit is what a step runs for: a day (its `DayLayout`), or a key naming a month
("YYYY-MM"), a run ("YYYY-MM-DD/<run id>"), or a step that covers every unit of its
pipeline (PADAM's prepare: "padam").

Two kinds, because two kinds of process hold them:
- `nw run` holds flocks (`filelock`) for as long as it runs: the kernel drops them when
  the process dies, and `nw` releases them only once its children are gone.
- A Meltano job's tasks are separate processes, so `begin` cannot hold a flock until
  `commit`. It takes a *lease* instead: a file naming the `meltano run` process (the
  tasks' parent) by pid and start time. `commit` releases it; if that process dies, the
  lease is dead and the next `begin` takes it over.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil
from filelock import FileLock, Timeout

from northwind_elt.core import settings
from northwind_elt.core.day import DayLayout, path_component


class AlreadyRunning(RuntimeError):
    pass


class StopRequested(RuntimeError):
    """A signal arrived while waiting for a lock."""


def locks_dir() -> Path:
    return settings.data_dir() / ".locks"


def meltano_locks_dir() -> Path:
    """Locks on Meltano's own run directories: per project, whatever data directory is used."""
    return settings.project_root() / ".meltano" / "nw-locks"


def _writable_parent(path: Path) -> None:
    from northwind_elt.core.errors import ConfigError

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(
            f"cannot write under the data directory {settings.data_dir()}: {err.strerror}",
            f"make {settings.data_dir()} writable, or point {settings.DATA_DIR_ENV} in .env to a writable directory",
        ) from None
    if not os.access(path.parent, os.W_OK):
        raise ConfigError(
            f"cannot write under the data directory {settings.data_dir()}: {path.parent} is not writable",
            f"make {settings.data_dir()} writable, or point {settings.DATA_DIR_ENV} in .env to a writable directory",
        )


def data_lock(name: str) -> FileLock:
    """A plain file lock in the data directory's lock folder, its folder checked writable."""
    path = locks_dir() / name
    _writable_parent(path)
    return FileLock(path)


def _unit(unit: DayLayout | str, name: str) -> tuple[str, Path]:
    """The unit's key and the lock file of (name, unit)."""
    if isinstance(unit, DayLayout):
        return unit.iso, unit.lock_file(name)
    return unit, locks_dir() / f"{name}-{path_component(unit)}.lock"


def lease_name(name: str, unit: str) -> str:
    """The lease beside a step lock: a run key's '/' must not become a folder."""
    return f"{name}-{path_component(unit)}"


@contextmanager
def step_lock(unit: DayLayout | str, name: str, what: str | None = None) -> Iterator[None]:
    """Hold (name, unit) for this process; a second holder fails at once, told `what` runs."""
    key, path = _unit(unit, name)
    what = what or f"{name} for {key}"
    _writable_parent(path)
    lock = FileLock(path, blocking=False)
    try:
        lock.acquire()
    except Timeout:
        raise AlreadyRunning(
            f"{what} is already running (lock {path}); wait for it to finish, then rerun if it failed"
        ) from None
    # The flock cannot be inspected without taking it (and so failing the holder's rival):
    # a lease beside it names this process for `nw status`, and dies with it.
    lease = lease_name(name, key)
    try:
        take_lease(lease, what, owner=os.getpid())
        yield
    finally:
        release_lease(lease, owner=os.getpid())
        lock.release()


def running(pipeline: str, step: str, unit: str) -> Holder | None:
    """The live process running the step for the unit (a day's, month's or run's key, or the
    pipeline's name for a step over every unit): its entry point's or its Meltano job's."""
    return lease_held(lease_name(f"run-{pipeline}-{step}", unit)) or lease_held(lease_name(f"{pipeline}-{step}", unit))


@contextmanager
def plugin_lock(
    job: str, stop_requested: Callable[[], bool] = lambda: False, waiting: str | None = None
) -> Iterator[None]:
    """Wait for a run of `job` for another unit: Meltano shares one run directory per plugin.

    A process that must not overlap a run of `job` (PADAM's export reads the marts the job
    publishes) holds it too. `waiting` is what the wait says (default: another day's run).
    The wait ends early, with StopRequested, once `stop_requested()` is true (a signal).
    """
    path = meltano_locks_dir() / f"meltano-{job}.lock"
    _writable_parent(path)
    lock = FileLock(path)
    try:
        lock.acquire(blocking=False)
    except Timeout:
        said = waiting or f"waiting: {job} is running for another day"
        print(f"{said} (lock {path})", file=sys.stderr, flush=True)
        while True:
            try:
                lock.acquire(timeout=0.5)
                break
            except Timeout:
                if stop_requested():
                    raise StopRequested(job) from None
    try:
        yield
    finally:
        lock.release()


@dataclass(frozen=True)
class Holder:
    pid: int
    started: float
    what: str

    def alive(self) -> bool:
        try:
            process = psutil.Process(self.pid)
            # A killed process its parent has not reaped yet is a zombie: it runs nothing.
            return abs(process.create_time() - self.started) < 0.01 and process.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False


def _process_started(pid: int) -> float:
    return psutil.Process(pid).create_time()


def lease_owner() -> int:
    """The process a task's lease belongs to: the `meltano run` that started the task."""
    return os.getppid()


def _lease_path(name: str) -> Path:
    folder = meltano_locks_dir() if name.startswith("meltano-") else locks_dir()
    return folder / f"{name}.lease"


def take_lease(name: str, what: str, owner: int | None = None) -> None:
    """Take the lease `name` for `owner`, or raise AlreadyRunning naming the live holder."""
    owner = lease_owner() if owner is None else owner
    path = _lease_path(name)
    _writable_parent(path)
    with FileLock(path.with_suffix(".guard")):
        holder = read_lease(path)
        if holder and holder.pid != owner and holder.alive():
            raise AlreadyRunning(
                f"{holder.what} is already running (process {holder.pid}, lease {path}); "
                "wait for it to finish, then rerun if it failed"
            )
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"pid": owner, "started": _process_started(owner), "what": what}))
        os.replace(tmp, path)


def read_lease(path: Path) -> Holder | None:
    try:
        data = json.loads(path.read_text())
        return Holder(int(data["pid"]), float(data["started"]), str(data["what"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def release_lease(name: str, owner: int | None = None) -> None:
    owner = lease_owner() if owner is None else owner
    path = _lease_path(name)
    if not path.exists():
        return
    with FileLock(path.with_suffix(".guard")):
        holder = read_lease(path)
        if holder is None or holder.pid == owner:
            path.unlink(missing_ok=True)


def lease_held(name: str) -> Holder | None:
    holder = read_lease(_lease_path(name))
    return holder if holder and holder.alive() else None
