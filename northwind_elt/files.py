"""Atomic file writes and the completeness manifests of step-1 partitions."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

_UMASK = os.umask(0)
os.umask(_UMASK)


class IncompletePartition(RuntimeError):
    """A partition's file and manifest disagree, or one of them is missing."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary name in the same directory, fsync, then rename into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs are ordinary files
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, payload: Any) -> None:
    atomic_write_bytes(path, (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode())


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def parquet_rows(path: Path) -> int:
    return pq.ParquetFile(path).metadata.num_rows


def describe_parquet(path: Path) -> dict[str, Any]:
    """What a manifest records of a finished file: rows, schema and checksum."""
    parquet = pq.ParquetFile(path)
    return {
        "file": path.name,
        "rows": parquet.metadata.num_rows,
        "schema": [{"name": f.name, "type": str(f.type)} for f in parquet.schema_arrow],
        "sha256": sha256_of(path),
        "bytes": path.stat().st_size,
    }


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
        rows = parquet_rows(data_file)
    except Exception as err:  # pyarrow raises several types for corrupt files
        raise IncompletePartition(f"unreadable Parquet file {data_file}: {err}") from None
    if rows != manifest["rows"]:
        raise IncompletePartition(
            f"row count mismatch: {data_file} has {rows} rows, its manifest says {manifest['rows']}"
        )
    return manifest
