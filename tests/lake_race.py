"""Writers racing for one commit of the lake: shared by the local-disk (unit) and embedded-S3 (e2e)
tests. Each writer is a thread with its own staged file and run id, as separate attempts are."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from northwind_elt.core.day import DayLayout
from northwind_elt.core.lake import CommitConflict
from northwind_elt.core.manifests import write_step
from northwind_elt.protocol.publish import Conflict, publish, versions_at_begin

WRITERS = 16
DAY = dt.date(2024, 1, 15)


def _race(count: int, attempt) -> tuple[list[int], list[str]]:
    """Run `attempt(i)` in `count` threads released at once; the winners and the refusals."""
    start = threading.Barrier(count)
    winners: list[int] = []
    refusals: list[str] = []
    lock = threading.Lock()

    def writer(index: int) -> None:
        start.wait()
        try:
            attempt(index)
        except (Conflict, CommitConflict) as refused:
            with lock:
                refusals.append(str(refused))
        else:
            with lock:
                winners.append(index)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return winners, refusals


def race_partition_commits(layout: DayLayout, staging: Path) -> tuple[list[int], list[str]]:
    """16 attempts of one extract step, each with its own file of table `t`, all begun before any
    committed: exactly one may publish the partition and the step."""
    versions = versions_at_begin(layout, "ds", "extract-ds")
    files = {}
    for i in range(WRITERS):
        path = staging / f"{i}" / "t.parquet"
        path.parent.mkdir(parents=True)
        pq.write_table(pa.table({"writer": pa.array([i] * (i + 1), pa.int64())}), path)
        files[i] = path

    def attempt(i: int) -> None:
        publish(layout, "ds", "extract-ds", f"{i:02d}" + "a" * 30, {"t": files[i]}, versions, ["t"], {})

    return _race(WRITERS, attempt)


def race_step_commits(layout: DayLayout) -> tuple[list[int], list[str]]:
    """16 writers of the same step manifest, all from the same version (the one each read at begin)."""
    version = layout.store.version(layout.step_manifest("extract-race"))

    def attempt(i: int) -> None:
        write_step(layout, "extract-race", "ds", f"run-{i}", {"t": {"rows": i}}, ["t"], version=version)

    return _race(WRITERS, attempt)
