"""Every manifest format of the day protocol, in one place.

- begin record  `.staging/{step}/{day}/_begin.json`: written by a step's begin task (run id,
  start time, owner process, the tables the step must produce).
- partition     `{dataset}/{table}/{day}/{table}.manifest.json` in the lake: one table's file of
  the day (`{table}.{attempt}.parquet`: rows, Arrow schema, sha256, bytes) and the table's
  real name (a file name too long for the file system is shortened, see
  `core.day.path_component`); created or replaced (compare and swap) after its file.
- step          `_manifests/{day}/{step}.json` in the lake: created or replaced (compare and
  swap) last by an extract commit; the step's output for the day is complete, and lists
  exactly its tables, each with its file, rows and sha256 (for the source database also the
  tables it left out: excluded by the user, not readable by the role). Readers go through it.
- load intent   `.staging/load/{day}/intent.json`: written by load's begin task; it is also
  tap-parquet-manifest's manifest (streams, files with rows and sha256); `_day` and `_load_id`
  are added to the rows by the commit, as constant columns of the attached partition.

And the ads pipeline's two, objects in its S3 bucket beside the object they describe:
- backup        `backup/{day}/{run id}.manifest.json`: written last by the load's verification;
  the API's response `{run id}.jsonl` is complete and verified (rows, sha256) from then on.
- archive       `archive/{cutoff day}/api_ad_data_..._{run id}.manifest.json`: written last by an
  archive after its object; an archive whose transaction never committed is adopted from it.
Both are read from users' buckets for as long as they exist: their keys, key order and
formatting (JSON indented by 2, one final newline) never change.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from northwind_elt.core.day import DayLayout
from northwind_elt.core.files import atomic_write_json, read_json, sha256_of
from northwind_elt.core.lake import Lake

if TYPE_CHECKING:
    import pyarrow as pa


class IncompletePartition(RuntimeError):
    """A partition's file and manifest disagree, or one of them is missing."""


def describe_parquet(path: Path) -> dict[str, Any]:
    """What a manifest records of a finished file: rows, Arrow schema and checksum."""
    import pyarrow.parquet as pq  # here: most `nw` processes read no Parquet

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


def manifest_bytes(payload: dict[str, Any]) -> bytes:
    return (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode()


def write_partition(
    layout: DayLayout, dataset: str, table: str, step: str, described: dict[str, Any], version: str | None
) -> None:
    """Commit one partition: CommitConflict if its manifest is no longer `version` (what the
    attempt read when it began; None: there was none)."""
    layout.store.replace(
        layout.partition_manifest(dataset, table),
        manifest_bytes({**described, "table": table, "day": layout.iso, "step": step, "dataset": dataset}),
        version,
    )


def write_step(
    layout: DayLayout,
    step: str,
    dataset: str,
    run_id: str,
    tables: dict[str, dict[str, Any]],
    expected: list[str],
    *,
    version: str | None,
    excluded_tables: list[str] | None = None,
    unreadable_tables: list[str] | None = None,
    views: list[str] | None = None,
) -> None:
    """The step's tables; for the source database also what it left out: the tables the user
    excluded (SOURCE_PG_EXCLUDE_TABLES), those the role may not read, and the views it took."""
    left_out = {
        key: sorted(value)
        for key, value in (
            ("excluded_tables", excluded_tables),
            ("unreadable_tables", unreadable_tables),
            ("views", views),
        )
        if value is not None
    }
    layout.store.replace(
        layout.step_manifest(step),
        manifest_bytes(
            {
                "day": layout.iso,
                "step": step,
                "dataset": dataset,
                "run_id": run_id,
                "tables": tables,
                "expected_tables": sorted(expected),
                **left_out,
                "published_at": dt.datetime.now(dt.UTC).isoformat(),
            }
        ),
        version,
    )


def read_lake_json(lake: Lake, path: PurePosixPath) -> dict[str, Any] | None:
    raw = lake.read_bytes(path)
    return None if raw is None else json.loads(raw)


def read_step(layout: DayLayout, step: str) -> dict[str, Any] | None:
    return read_lake_json(layout.store, layout.step_manifest(step))


def verify_file(lake: Lake, data_file: PurePosixPath, rows: int, sha256: str, described_by: str) -> pa.Schema:
    """Check a published file against what a manifest says of it; its Arrow schema, or
    IncompletePartition naming the file."""
    import pyarrow.parquet as pq

    where = lake.where(data_file)
    try:
        actual = lake.sha256(data_file)
    except FileNotFoundError:
        raise IncompletePartition(f"missing file {where} (listed in {described_by})") from None
    if actual != sha256:
        raise IncompletePartition(f"checksum mismatch: {where} is not the file {described_by} describes")
    try:
        with lake.open_input(data_file) as handle:
            parquet = pq.ParquetFile(handle)
            found, schema = parquet.metadata.num_rows, parquet.schema_arrow
    except Exception as err:  # pyarrow raises several types for corrupt files
        raise IncompletePartition(f"unreadable Parquet file {where}: {err}") from None
    if found != rows:
        raise IncompletePartition(f"row count mismatch: {where} has {found} rows, {described_by} says {rows}")
    return schema


def verify_partition(lake: Lake, manifest_path: PurePosixPath) -> dict[str, Any]:
    """Check a partition against its manifest; raise IncompletePartition naming the file."""
    manifest = read_lake_json(lake, manifest_path)
    if manifest is None:
        raise IncompletePartition(f"missing manifest {lake.where(manifest_path)}")
    verify_file(
        lake, manifest_path.parent / manifest["file"], manifest["rows"], manifest["sha256"], lake.where(manifest_path)
    )
    return manifest


def write_intent(
    layout: DayLayout, step: str, load_id: str, started_at: str, partitions: list[tuple[str, str, dict[str, Any]]]
) -> None:
    """tap-parquet-manifest's manifest, plus what the load's commit checks the target against."""
    atomic_write_json(
        layout.load_intent(step),
        {
            "day": layout.iso,
            "load_id": load_id,
            "started_at": started_at,
            "streams": [
                {"name": table, "files": [{"path": where, "rows": m["rows"], "sha256": m["sha256"]}]}
                for table, where, m in partitions
            ],
            "tables": {table: m["rows"] for table, _, m in partitions},
        },
    )


def read_intent(layout: DayLayout, step: str) -> dict[str, Any] | None:
    path = layout.load_intent(step)
    return read_json(path) if path.exists() else None


# --- the ads pipeline's object manifests ---------------------------------------------------


def _object_manifest_bytes(fields: dict[str, Any]) -> bytes:
    return (json.dumps(fields, indent=2) + "\n").encode()


def _required(value: dict[str, Any], kind: str, *names: str) -> None:
    missing = [name for name in names if name not in value]
    if missing:
        raise ValueError(f"not {kind}: no {', '.join(repr(name) for name in missing)}")


@dataclass(frozen=True)
class BackupManifest:
    """A verified backup of one API response (the load's unit, a run)."""

    key: str
    run_id: str
    day: dt.date
    rows: int
    distinct_ad_ids: int
    bytes: int
    sha256: str
    verified_at: str  # ISO 8601, to the second, UTC

    def to_bytes(self) -> bytes:
        return _object_manifest_bytes(
            {
                "key": self.key,
                "run_id": self.run_id,
                "day": self.day.isoformat(),
                "rows": self.rows,
                "distinct_ad_ids": self.distinct_ad_ids,
                "bytes": self.bytes,
                "sha256": self.sha256,
                "verified_at": self.verified_at,
            }
        )

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> BackupManifest:
        """A manifest as read back; ValueError naming what is missing or malformed."""
        _required(value, "a backup manifest", "key", "run_id", "day", "rows", "sha256")
        return cls(
            key=str(value["key"]),
            run_id=str(value["run_id"]),
            day=dt.date.fromisoformat(value["day"]),
            rows=int(value["rows"]),
            distinct_ad_ids=int(value.get("distinct_ad_ids", 0)),
            bytes=int(value.get("bytes", 0)),
            sha256=str(value["sha256"]),
            verified_at=str(value.get("verified_at", "")),
        )


def verified_now() -> str:
    """A backup manifest's `verified_at`: now, UTC, to the second."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def iso_utc(value: dt.datetime) -> str:
    """An instant as the archive manifests write it: ISO 8601 with a Z."""
    return value.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class ArchiveManifest:
    """An archive object of api_ad_data rows shown before `cutoff`, written by the archive of `day`."""

    key: str
    run_id: str
    day: dt.date
    cutoff: dt.datetime
    rows: int
    bytes: int
    sha256: str

    def to_bytes(self) -> bytes:
        return _object_manifest_bytes(
            {
                "key": self.key,
                "run_id": self.run_id,
                "day": self.day.isoformat(),
                "cutoff": iso_utc(self.cutoff),
                "rows": self.rows,
                "bytes": self.bytes,
                "sha256": self.sha256,
            }
        )

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> ArchiveManifest:
        """A manifest as read back (an earlier run's, maybe written by hand); ValueError naming
        what is missing or malformed. A missing run id reads as '?'."""
        _required(value, "an archive manifest", "key", "day", "cutoff", "sha256")
        return cls(
            key=str(value["key"]),
            run_id=str(value.get("run_id", "?")),
            day=dt.date.fromisoformat(value["day"]),
            cutoff=dt.datetime.fromisoformat(value["cutoff"]),
            rows=int(value.get("rows", 0)),
            bytes=int(value.get("bytes", 0)),
            sha256=str(value["sha256"]),
        )
