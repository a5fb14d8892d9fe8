"""Parquet BATCH files of different tables loaded at once (setting `max_parallel_tables`).

The Singer SDK hands a target its messages one at a time. A table's files are loaded one after
another in the order they came, each in its own transaction over its own connection, as on a
single thread; files of different tables are loaded at the same time by a pool of threads. Before
anything that must follow a table's loads (RECORDs of the same stream, ACTIVATE_VERSION, the
end of the stream) the target waits for that table's; before the SDK emits STATE (only after a
drain of every sink) it waits for all of them, so no STATE message ever covers rows that are
not committed. After a failure no further load starts, and the first failure is the target's
error, raised at the next message that hands over files or waits.
"""

from __future__ import annotations

import contextlib
import os
import threading
import typing as t
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for

if t.TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Iterator

    from adbc_driver_manager.dbapi import Connection


def default_parallel_tables() -> int:
    """min(4, the CPUs this process may run on)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(4, cpus))


class LoadSkippedError(RuntimeError):
    """A load not started because an earlier one failed (that failure is the target's error)."""


class IngestQueue:
    """Loads (callables) by key: one key's in order, different keys at once, `workers` at a time."""

    def __init__(self, workers: int) -> None:
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="ingest")
        self._last: dict[Hashable, Future[None]] = {}
        self._failure: BaseException | None = None
        self._lock = threading.Lock()

    def submit(self, key: Hashable, load: Callable[[], None]) -> None:
        self.raise_failure()
        previous = self._last.get(key)

        def run() -> None:
            if previous is not None:
                wait_for([previous])  # the pool takes loads in order: `previous` already runs or ran
            if self._failure is not None:
                raise LoadSkippedError
            try:
                load()
            except BaseException as exc:
                with self._lock:
                    self._failure = self._failure or exc
                raise

        self._last[key] = self._pool.submit(run)

    def wait(self, key: Hashable) -> None:
        """Until the key's loads are done; raises the first failure of any key."""
        if key in self._last:
            wait_for([self._last[key]])
        self.raise_failure()

    def wait_all(self) -> None:
        wait_for(list(self._last.values()))
        self.raise_failure()

    def raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    def close(self) -> None:
        """Loads not started are dropped; the running ones end (each its own transaction)."""
        self._pool.shutdown(wait=True, cancel_futures=True)


class AdbcSessions:
    """The target's ADBC connections, each kept for the next BATCH message once its files are
    committed: opening one costs about 60 ms (authentication, and the driver loads the server's
    types), a small file's load a few. Each file is still its own transaction; a connection a
    load failed on is closed, never reused."""

    def __init__(self) -> None:
        self._idle: dict[str, list[Connection]] = {}  # by URI (which holds the password: never logged)
        self._open: list[Connection] = []
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def session(self, uri: str) -> Iterator[Connection]:
        import adbc_driver_postgresql.dbapi

        with self._lock:
            idle = self._idle.setdefault(uri, [])
            connection = idle.pop() if idle else None
        if connection is None:
            connection = adbc_driver_postgresql.dbapi.connect(uri)
            with self._lock:
                self._open.append(connection)
        try:
            yield connection
        except BaseException:
            with self._lock:
                self._open.remove(connection)
            connection.close()
            raise
        with self._lock:
            self._idle[uri].append(connection)

    def close(self) -> None:
        with self._lock:
            connections, self._open, self._idle = self._open, [], {}
        for connection in connections:
            with contextlib.suppress(Exception):
                connection.close()
