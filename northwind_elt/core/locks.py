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

With NW_STATE_BACKEND=postgres (core/state.py) the leases are rows of the shared state
database, naming host and process, and `step_lock` is such a lease too: a machine sees another
machine's lease as held until it expires (NW_LEASE_SECONDS), and a keeper process
(core/lease_keeper.py) renews the leases of a live owner. Only `plugin_lock` stays a flock: it
guards this working copy's own Meltano run directories.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil
from filelock import FileLock, Timeout

from northwind_elt.core import settings, state
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
    if state.shared():  # on every machine: a lease in the state database, renewed while this process lives
        lease = lease_name(name, key)
        take_lease(lease, what, owner=os.getpid())
        try:
            yield
        finally:
            release_lease(lease, owner=os.getpid())
        return
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
        started = said_at = time.monotonic()
        while True:
            try:
                lock.acquire(timeout=0.5)
                break
            except Timeout:
                if stop_requested():
                    raise StopRequested(job) from None
                if time.monotonic() - said_at >= 5:  # never silent for long: the other run may take minutes
                    said_at = time.monotonic()
                    print(f"  ... still waiting for {job} ({said_at - started:.0f} s)", file=sys.stderr, flush=True)
    try:
        yield
    finally:
        lock.release()


@dataclass(frozen=True)
class Holder:
    pid: int
    started: float
    what: str
    host: str = ""  # shared state: the machine holding the lease
    fresh: bool = True  # shared state: the lease has not expired

    def alive(self) -> bool:
        if self.host and self.host != state.host():
            return self.fresh  # another machine's process: alive while it renews its lease
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


def take_lease(name: str, what: str, owner: int | None = None) -> Holder | None:
    """Take the lease `name` for `owner`, or raise AlreadyRunning naming the live holder. Returns
    the holder it took over on another machine (its lease expired: that attempt died), else None."""
    owner = lease_owner() if owner is None else owner
    if _shared(name):
        return _take_shared(name, what, owner)
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
    return None


def read_lease(path: Path) -> Holder | None:
    try:
        data = json.loads(path.read_text())
        return Holder(int(data["pid"]), float(data["started"]), str(data["what"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _shared(name: str) -> bool:
    """In the state database, unless it guards this working copy's Meltano run folders (meltano-<job>)."""
    return state.shared() and not name.startswith("meltano-")


_SHARED_HOLDER = "SELECT what, host, pid, started, expires_at > now() AS fresh FROM leases WHERE name = %s"


def _shared_holder(row: dict | None) -> Holder | None:
    return Holder(row["pid"], row["started"], row["what"], row["host"], row["fresh"]) if row else None


def _take_shared(name: str, what: str, owner: int) -> Holder | None:
    me, started = state.host(), _process_started(owner)
    with state.connect() as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"lease {name}",))  # one taker at a time
        holder = _shared_holder(conn.execute(_SHARED_HOLDER, (name,)).fetchone())
        if holder and (holder.host, holder.pid) != (me, owner) and holder.alive():
            raise AlreadyRunning(
                f"{holder.what} is already running (process {holder.pid} on {holder.host}, lease {name} in "
                f"{state.describe()}); wait for it to finish, then rerun if it failed"
            )
        # The row replaced only if it is still the holder judged above (a keeper may have renewed it since).
        taken = conn.execute(
            "INSERT INTO leases (name, what, host, pid, started, expires_at)"
            " VALUES (%s, %s, %s, %s, %s, now() + make_interval(secs => %s))"
            " ON CONFLICT (name) DO UPDATE SET what = excluded.what, host = excluded.host, pid = excluded.pid,"
            " started = excluded.started, taken_at = now(), expires_at = excluded.expires_at"
            " WHERE leases.host = %s AND leases.pid = %s AND leases.started = %s"
            "   AND (leases.expires_at < now() OR %s)"
            " RETURNING name",
            (
                name,
                what,
                me,
                owner,
                started,
                state.lease_seconds(),
                holder.host if holder else "",
                holder.pid if holder else 0,
                holder.started if holder else 0,
                holder is not None and holder.host == me,  # on this host its process was found dead or is the owner
            ),
        ).fetchone()
        if taken is None:
            raise AlreadyRunning(
                f"{what}: the lease {name} in {state.describe()} was renewed or taken by another process just now; "
                "wait for it to finish, then rerun if it failed"
            )
    from northwind_elt.core import lease_keeper

    lease_keeper.ensure(owner, started)
    return holder if holder and holder.host != me else None


def release_lease(name: str, owner: int | None = None) -> None:
    owner = lease_owner() if owner is None else owner
    if _shared(name):
        state.execute("DELETE FROM leases WHERE name = ? AND host = ? AND pid = ?", (name, state.host(), owner))
        return
    path = _lease_path(name)
    if not path.exists():
        return
    with FileLock(path.with_suffix(".guard")):
        holder = read_lease(path)
        if holder is None or holder.pid == owner:
            path.unlink(missing_ok=True)


def lease_held(name: str) -> Holder | None:
    if _shared(name):
        rows = state.execute(_SHARED_HOLDER.replace("%s", "?"), (name,))
        holder = _shared_holder(rows[0] if rows else None)
        return holder if holder and holder.alive() else None
    holder = read_lease(_lease_path(name))
    return holder if holder and holder.alive() else None
