"""Every manifest format of the day protocol, in one place.

- begin record  `.staging/{step}/{day}/_begin.json`: written by a step's begin task (run id,
  start time, owner process, the tables the step must produce).
- partition     `{dataset}/{table}/{day}/{table}.manifest.json`: one table's file of the day
  (rows, Arrow schema, sha256, bytes); written after its file.
- step          `_manifests/{day}/{step}.json`: written last by an extract commit; the
  step's output for the day is complete, and lists exactly its tables.
- load intent   `.staging/load/{day}/intent.json`: written by load's begin task; it is also
  tap-parquet-manifest's manifest (streams, files with rows and sha256); `_day` and `_load_id`
  are added to the rows by the commit, as constant columns of the attached partition.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from northwind_elt.core.day import DayLayout
from northwind_elt.core.files import atomic_write_json, read_json, sha256_of


class IncompletePartition(RuntimeError):
    """A partition's file and manifest disagree, or one of them is missing."""


def describe_parquet(path: Path) -> dict[str, Any]:
    """What a manifest records of a finished file: rows, Arrow schema and checksum."""
    parquet = pq.ParquetFile(path)
    return {
        "file": path.name,
        "rows": parquet.metadata.num_rows,
        "schema": [{"name": f.name, "type": str(f.type)} for f in parquet.schema_arrow],
        "sha256": sha256_of(path),
        "bytes": path.stat().st_size,
    }


def write_begin(layout: DayLayout, step: str, record: dict[str, Any]) -> None:
    atomic_write_json(layout.begin_record(step), {"day": layout.iso, "step": step, **record})


def read_begin(layout: DayLayout, step: str) -> dict[str, Any] | None:
    path = layout.begin_record(step)
    if not path.exists():
        return None
    record = read_json(path)
    return record if record.get("day") == layout.iso and record.get("step") == step else None


def write_partition(layout: DayLayout, dataset: str, table: str, step: str, described: dict[str, Any]) -> None:
    atomic_write_json(
        layout.partition_manifest(dataset, table),
        {**described, "table": table, "day": layout.iso, "step": step, "dataset": dataset},
    )


def write_step(
    layout: DayLayout, step: str, dataset: str, run_id: str, tables: dict[str, dict[str, Any]], expected: list[str]
) -> None:
    atomic_write_json(
        layout.step_manifest(step),
        {
            "day": layout.iso,
            "step": step,
            "dataset": dataset,
            "run_id": run_id,
            "tables": tables,
            "expected_tables": sorted(expected),
            "published_at": dt.datetime.now(dt.UTC).isoformat(),
        },
    )


def read_step(layout: DayLayout, step: str) -> dict[str, Any] | None:
    path = layout.step_manifest(step)
    return read_json(path) if path.exists() else None


def verify_partition(manifest_path: Path) -> dict[str, Any]:
    """Check a partition against its manifest; raise IncompletePartition naming the file."""
    if not manifest_path.exists():
        raise IncompletePartition(f"missing manifest {manifest_path}")
    manifest = read_json(manifest_path)
    data_file = manifest_path.parent / manifest["file"]
    if not data_file.exists():
        raise IncompletePartition(f"missing file {data_file} (listed in {manifest_path})")
    if sha256_of(data_file) != manifest["sha256"]:
        raise IncompletePartition(f"checksum mismatch: {data_file} is not the file {manifest_path} describes")
    try:
        rows = pq.ParquetFile(data_file).metadata.num_rows
    except Exception as err:  # pyarrow raises several types for corrupt files
        raise IncompletePartition(f"unreadable Parquet file {data_file}: {err}") from None
    if rows != manifest["rows"]:
        raise IncompletePartition(
            f"row count mismatch: {data_file} has {rows} rows, its manifest says {manifest['rows']}"
        )
    return manifest


def write_intent(
    layout: DayLayout, step: str, load_id: str, started_at: str, partitions: list[tuple[str, Path, dict[str, Any]]]
) -> None:
    """tap-parquet-manifest's manifest, plus what the load's commit checks the target against."""
    atomic_write_json(
        layout.load_intent(step),
        {
            "day": layout.iso,
            "load_id": load_id,
            "started_at": started_at,
            "streams": [
                {"name": table, "files": [{"path": str(path), "rows": m["rows"], "sha256": m["sha256"]}]}
                for table, path, m in partitions
            ],
            "tables": {table: m["rows"] for table, _, m in partitions},
        },
    )


def read_intent(layout: DayLayout, step: str) -> dict[str, Any] | None:
    path = layout.load_intent(step)
    return read_json(path) if path.exists() else None
