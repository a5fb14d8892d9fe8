"""Tables read ahead, several at a time, while the SDK still emits their messages one stream after another.

The Singer SDK syncs the streams in turn. With `max_parallel_tables` above 1, the first BATCH
stream to sync submits every FULL_TABLE BATCH stream of the run, in the order the SDK syncs
them, to a pool of that many threads. Each thread reads its table into its own Parquet files
exactly as a stream reads it in turn (same query, same files: the writer's input does not
depend on the thread), and keeps the list. At its turn a stream takes that list and the SDK
emits its BATCH and STATE messages, so the messages, their order and the state are those of
a sequential run. A table that failed fails at its turn, after the files it wrote before the
failure, as in a sequential run.

An INCREMENTAL stream is not read ahead: its query starts at the bookmark of its turn. Files
read ahead but never announced (the run stopped first) are deleted: no target ever saw them.
"""

from __future__ import annotations

import logging
import os
import threading
import typing as t
import urllib.parse
import urllib.request
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from singer_sdk.helpers._batch import BaseBatchFileEncoding, BatchConfig

    from tap_postgres_arrow.stream import PostgresArrowStream

LOGGER = logging.getLogger(__name__)


def default_parallel_tables() -> int:
    """min(4, the CPUs this process may run on)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(4, cpus))


class ReadStopped(Exception):  # not an error: the run ended before the table was taken
    """Raised inside a table's read when the run stops: its files are not wanted any more."""


@dataclass
class TableRead:
    """What one table's read produced: its BATCH files in order, then the error that ended it, if any."""

    batches: list[tuple[BaseBatchFileEncoding, list[str]]] = field(default_factory=list)
    error: BaseException | None = None

    def replay(self) -> Iterator[tuple[BaseBatchFileEncoding, list[str]]]:
        yield from self.batches
        if self.error is not None:
            raise self.error

    def delete_files(self) -> None:
        for _, manifest in self.batches:
            for uri in manifest:
                path = Path(urllib.request.url2pathname(urllib.parse.urlparse(uri).path))
                path.unlink(missing_ok=True)


class TableReadAhead:
    """The pool of one run; `streams` (called at the first `take`) lists the streams to read ahead."""

    def __init__(self, workers: int, streams: Callable[[], list[PostgresArrowStream]]) -> None:
        self.workers = workers
        self._streams = streams
        self._pool: ThreadPoolExecutor | None = None
        self._reads: dict[str, Future[TableRead]] = {}
        self.stop = threading.Event()

    def take(self, stream: PostgresArrowStream) -> TableRead | None:
        """The table's read, waited for; None if the stream is not read ahead (read it in turn)."""
        if self._pool is None:
            self._start()
        future = self._reads.pop(stream.name, None)
        return None if future is None else future.result()

    def _start(self) -> None:
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="table-read")
        for stream in self._streams():
            batch_config = stream.get_batch_config(stream.config)
            if batch_config is not None:
                self._reads[stream.name] = self._pool.submit(self._read, stream, batch_config)

    def _read(self, stream: PostgresArrowStream, batch_config: BatchConfig) -> TableRead:
        read = TableRead()
        try:
            for batch in stream.arrow_batches(batch_config, None, stop=self.stop):
                read.batches.append(batch)
        except BaseException as exc:  # raised again at the stream's turn
            read.error = exc
        return read

    def close(self) -> None:
        """Stop the reads not taken and delete their files (never announced)."""
        self.stop.set()
        if self._pool is None:
            return
        self._pool.shutdown(wait=True, cancel_futures=True)
        for name, future in self._reads.items():
            if future.cancelled():
                continue
            LOGGER.info("Deleting the files of %s, read ahead but not sent: the run ended first", name)
            future.result().delete_files()
        self._reads.clear()
