"""The manifest: which Parquet files make up which stream, and how to check them.

Manifest format (JSON)::

    {
      "streams": [
        {
          "name": "orders",
          "files": [{"path": "orders.parquet", "rows": 830, "sha256": "<hex>"}],
          "key_properties": ["order_id"]
        }
      ],
      "constant_columns": [{"name": "_load_id", "type": "string", "value": "abc"}]
    }

Relative file paths resolve against the manifest file's directory; a path with a scheme
(`s3://bucket/key`, any fsspec URL) is read through fsspec with the tap's `storage_options`.
`rows`, `sha256`, `key_properties` and `constant_columns` are optional; every stream needs at
least one file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

CONSTANT_TYPES = ("string", "date", "integer", "timestamp")
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


class ManifestError(ValueError):
    """The manifest or the constant columns are malformed or inconsistent."""


class VerificationError(ManifestError):
    """A file is missing, unreadable, or not the file the manifest describes."""


@dataclass(frozen=True)
class ConstantColumn:
    """A column with one value, added to every row of every stream."""

    name: str
    type: str
    value: Any  # the parsed Python value (str, int, datetime.date, aware datetime.datetime)
    origin: str  # where it was declared, for error messages

    @property
    def arrow_type(self) -> pa.DataType:
        return {
            "string": pa.string(),
            "date": pa.date32(),
            "integer": pa.int64(),
            "timestamp": pa.timestamp("us", tz="UTC"),
        }[self.type]

    @property
    def jsonschema(self) -> dict[str, Any]:
        return {
            "string": {"type": ["string"]},
            "date": {"type": ["string"], "format": "date"},
            "integer": {"type": ["integer"]},
            "timestamp": {"type": ["string"], "format": "date-time"},
        }[self.type]

    def array(self, length: int) -> pa.Array:
        return pa.repeat(pa.scalar(self.value, self.arrow_type), length)


class FileStore:
    """Opens the manifest's files: local paths as they are, URLs through fsspec."""

    def __init__(self, storage_options: Mapping[str, Any] | None = None) -> None:
        # Unset settings arrive as empty strings from Meltano: they mean "not given".
        self.options = {key: value for key, value in (storage_options or {}).items() if value not in ("", None)}

    @staticmethod
    def is_url(path: str) -> bool:
        return "://" in path

    def _fs(self, path: str):
        import fsspec

        return fsspec.core.url_to_fs(path, **self.options)

    def is_file(self, path: str) -> bool:
        if not self.is_url(path):
            return Path(path).is_file()
        fs, inner = self._fs(path)
        return fs.isfile(inner)

    def open(self, path: str):
        if not self.is_url(path):
            return open(path, "rb")
        fs, inner = self._fs(path)
        return fs.open(inner, "rb", block_size=1 << 22)

    def copy_to(self, path: str, local: Path) -> None:
        """The file's bytes at `local`: a hard link when it is on this file system, else a copy."""
        if not self.is_url(path):
            try:
                os.link(path, local)
            except OSError:
                shutil.copyfile(path, local)
            return
        fs, inner = self._fs(path)
        fs.get_file(inner, str(local))


@dataclass(frozen=True)
class FileSpec:
    path: str  # an absolute local path or a URL
    rows: int | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class StreamSpec:
    name: str
    files: tuple[FileSpec, ...]
    key_properties: tuple[str, ...] = ()


@dataclass(frozen=True)
class Manifest:
    path: Path
    streams: tuple[StreamSpec, ...]
    constant_columns: tuple[ConstantColumn, ...]  # the manifest's own, not the config's


def _parse_value(name: str, kind: str, value: Any, origin: str) -> Any:
    where = f"constant column {name!r} ({origin})"
    if value is None:
        raise ManifestError(f"{where} has no value")
    if kind == "string":
        if not isinstance(value, str):
            raise ManifestError(f"{where}: value {value!r} is not a string")
        return value
    if kind == "integer":
        if isinstance(value, bool):
            raise ManifestError(f"{where}: value {value!r} is not an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
            return int(value)
        raise ManifestError(f"{where}: value {value!r} is not an integer")
    if kind == "date":
        try:
            return dt.date.fromisoformat(value)
        except (TypeError, ValueError):
            raise ManifestError(f"{where}: value {value!r} is not an ISO date (YYYY-MM-DD)") from None
    # timestamp: ISO 8601; a value without an offset is taken as UTC.
    try:
        stamp = dt.datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise ManifestError(f"{where}: value {value!r} is not an ISO timestamp") from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return stamp.astimezone(dt.UTC)


def parse_constant_columns(raw: Any, origin: str) -> tuple[ConstantColumn, ...]:
    """Validate a `constant_columns` list, as given in the config or in the manifest."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ManifestError(f"{origin}: constant_columns must be a list")
    columns = []
    for item in raw:
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str) or not item["name"]:
            raise ManifestError(f"{origin}: each constant column needs a non-empty string 'name', got {item!r}")
        name, kind = item["name"], item.get("type")
        if kind not in CONSTANT_TYPES:
            raise ManifestError(
                f"constant column {name!r} ({origin}): type {kind!r} is not one of {', '.join(CONSTANT_TYPES)}"
            )
        columns.append(ConstantColumn(name, kind, _parse_value(name, kind, item.get("value"), origin), origin))
    return tuple(columns)


def merge_constant_columns(*groups: Iterable[ConstantColumn]) -> tuple[ConstantColumn, ...]:
    """Concatenate constant column groups in order; a name given twice is an error naming both."""
    seen: dict[str, ConstantColumn] = {}
    for column in (column for group in groups for column in group):
        if column.name in seen:
            raise ManifestError(
                f"constant column {column.name!r} is given twice: in {seen[column.name].origin} and in {column.origin}"
            )
        seen[column.name] = column
    return tuple(seen.values())


def load_manifest(manifest_file: str | Path) -> Manifest:
    """Read and validate the manifest; file paths come back absolute."""
    path = Path(manifest_file).expanduser().resolve()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"manifest file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ManifestError(f"manifest file {path} cannot be read as JSON: {err}") from None
    if not isinstance(raw, Mapping) or not isinstance(raw.get("streams"), list):
        raise ManifestError(f"manifest {path}: expected an object with a 'streams' list")
    if not raw["streams"]:
        raise ManifestError(f"manifest {path} lists no streams")
    base = path.parent
    streams: list[StreamSpec] = []
    names: set[str] = set()
    for entry in raw["streams"]:
        streams.append(_parse_stream(entry, base, path))
        if streams[-1].name in names:
            raise ManifestError(f"manifest {path}: stream {streams[-1].name!r} is listed twice")
        names.add(streams[-1].name)
    constants = parse_constant_columns(raw.get("constant_columns"), f"manifest {path} constant_columns")
    return Manifest(path, tuple(streams), constants)


def _parse_stream(entry: Any, base: Path, manifest: Path) -> StreamSpec:
    if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str) or not entry["name"]:
        raise ManifestError(f"manifest {manifest}: each stream needs a non-empty string 'name', got {entry!r}")
    name = entry["name"]
    where = f"manifest {manifest}, stream {name!r}"
    files = entry.get("files")
    if not isinstance(files, list) or not files:
        raise ManifestError(f"{where}: 'files' must be a non-empty list")
    keys = entry.get("key_properties") or []
    if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
        raise ManifestError(f"{where}: 'key_properties' must be a list of column names")
    return StreamSpec(name, tuple(_parse_file(item, base, where) for item in files), tuple(keys))


def _parse_file(item: Any, base: Path, where: str) -> FileSpec:
    if not isinstance(item, Mapping) or not isinstance(item.get("path"), str) or not item["path"]:
        raise ManifestError(f"{where}: each file needs a non-empty string 'path', got {item!r}")
    given = item["path"]
    path = given if FileStore.is_url(given) else str((base / Path(given).expanduser()).resolve())
    rows, sha256 = item.get("rows"), item.get("sha256")
    if rows is not None and (isinstance(rows, bool) or not isinstance(rows, int) or rows < 0):
        raise ManifestError(f"{where}: file {path}: 'rows' must be a non-negative integer, got {rows!r}")
    if sha256 is not None and (not isinstance(sha256, str) or not _SHA256.match(sha256)):
        raise ManifestError(f"{where}: file {path}: 'sha256' must be 64 hex digits, got {sha256!r}")
    return FileSpec(path, rows, sha256.lower() if sha256 else None)


def sha256_of(store: FileStore, path: str) -> str:
    with store.open(path) as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def check_file(store: FileStore, spec: FileSpec, verify: bool) -> tuple[pa.Schema | None, list[str]]:
    """Open one file; with `verify`, compare it with what the manifest says.

    Returns the file's Arrow schema (None when it cannot be read) and the problems found,
    each naming the file.
    """
    problems: list[str] = []
    try:
        found = store.is_file(spec.path)
    except OSError as err:
        return None, [f"unreadable file: {spec.path}: {err}"]
    if not found:
        return None, [f"missing file: {spec.path} does not exist"]
    if verify and spec.sha256 is not None:
        try:
            actual = sha256_of(store, spec.path)
        except OSError as err:
            return None, [f"unreadable file: {spec.path}: {err}"]
        if actual != spec.sha256:
            problems.append(
                f"checksum mismatch: {spec.path} is not the file the manifest describes "
                f"(sha256 {actual}, the manifest says {spec.sha256})"
            )
    try:
        with store.open(spec.path) as handle, pq.ParquetFile(handle) as parquet:
            schema, rows = parquet.schema_arrow, parquet.metadata.num_rows
    except (OSError, pa.ArrowException) as err:
        return None, [*problems, f"unreadable file: {spec.path} is not a readable Parquet file: {err}"]
    if verify and spec.rows is not None and rows != spec.rows:
        problems.append(f"row count mismatch: {spec.path} has {rows} rows, the manifest says {spec.rows}")
    return schema, problems


def check_streams(
    streams: Sequence[StreamSpec], constants: Sequence[ConstantColumn], verify: bool, store: FileStore | None = None
) -> dict[str, pa.Schema]:
    """Check every file of every stream; return each stream's Arrow schema (its first file's).

    All problems are collected first, then raised together, so nothing is emitted when any
    file fails.
    """
    problems: list[str] = []
    schemas: dict[str, pa.Schema] = {}
    for stream in streams:
        for spec in stream.files:
            schema, found = check_file(store or FileStore(), spec, verify)
            problems.extend(found)
            if schema is None:
                continue
            first = schemas.setdefault(stream.name, schema)
            if not schema.equals(first, check_metadata=False):
                problems.append(
                    f"schema mismatch: {spec.path} (stream {stream.name!r}) does not have the schema of "
                    f"{stream.files[0].path}"
                )
            for column in constants:
                if column.name in schema.names:
                    problems.append(
                        f"constant column {column.name!r} ({column.origin}) clashes with a column of {spec.path}"
                    )
        if stream.name in schemas:
            known = {*schemas[stream.name].names, *(column.name for column in constants)}
            missing = [key for key in stream.key_properties if key not in known]
            if missing:
                problems.append(
                    f"stream {stream.name!r}: key_properties {missing} are not columns of its files or constant columns"
                )
    if problems:
        raise VerificationError("; ".join(problems))
    return schemas
