"""tap-parquet-manifest: one stream per manifest entry, read from verified Parquet files.

The manifest (setting `manifest_file`) names each stream's files, optionally with their row
counts and SHA-256 checksums. With `verify` on (the default), every file is checked before
the first message is written, so a run either emits everything or nothing. Constant columns
(from the config, then from the manifest) are appended to every row of every stream.

With `batch_config`, each stream goes out as Parquet batch files written straight from Arrow
(no per-row Python); otherwise as RECORD messages.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse
from urllib.request import url2pathname

import pyarrow as pa
import pyarrow.parquet as pq
from singer_sdk import Stream, Tap
from singer_sdk import typing as th
from singer_sdk.helpers._batch import BaseBatchFileEncoding, BatchConfig

from tap_parquet_manifest.manifest import (
    CONSTANT_TYPES,
    ConstantColumn,
    FileStore,
    Manifest,
    ManifestError,
    StreamSpec,
    check_streams,
    load_manifest,
    merge_constant_columns,
    parse_constant_columns,
)

BATCH_ROWS = 100_000
RECORD_ROWS = 10_000


def jsonschema_of(field: pa.Field) -> dict[str, Any]:
    """JSON Schema of one Arrow field, as target-postgres expects it."""
    kind = field.type
    if pa.types.is_integer(kind):
        schema: dict[str, Any] = {"type": ["integer"]}
        if kind.bit_width <= 16:
            schema["x-sql-datatype"] = "smallint"
    elif pa.types.is_floating(kind):
        schema = {"type": ["number"]}
    elif pa.types.is_boolean(kind):
        schema = {"type": ["boolean"]}
    elif pa.types.is_date(kind):
        schema = {"type": ["string"], "format": "date"}
    elif pa.types.is_timestamp(kind):
        schema = {"type": ["string"], "format": "date-time"}
    elif pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        schema = {"type": ["string"], "contentEncoding": "base16"}
    else:
        schema = {"type": ["string"]}
    if field.nullable:
        schema["type"].append("null")
    return schema


def storage_dir(root: str) -> Path:
    """The local directory of a `file://` batch storage root (created if missing)."""
    parsed = urlparse(root)
    if parsed.scheme != "file":
        raise ValueError(f"batch_config.storage.root must be a file:// URI, got {root!r}")
    if parsed.netloc in ("", "localhost"):
        directory = Path(url2pathname(parsed.path))
    else:  # file://relative/dir: relative to the working directory
        directory = Path(url2pathname(parsed.netloc + parsed.path))
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    return directory


class ParquetStream(Stream):
    """All rows of one manifest entry's files, in order, with the constant columns."""

    def __init__(
        self, tap: TapParquet, spec: StreamSpec, arrow_schema: pa.Schema, constants: tuple[ConstantColumn, ...]
    ) -> None:
        self.spec = spec
        self.arrow_schema = arrow_schema
        self.constants = constants
        properties = {field.name: jsonschema_of(field) for field in arrow_schema}
        properties.update({column.name: column.jsonschema for column in constants})
        super().__init__(tap, schema={"type": "object", "properties": properties}, name=spec.name)
        self.primary_keys = list(spec.key_properties)

    def _stamp(self, table: pa.Table) -> pa.Table:
        for column in self.constants:
            table = table.append_column(pa.field(column.name, column.arrow_type), column.array(table.num_rows))
        return table

    def iter_tables(self, batch_size: int) -> Iterator[pa.Table]:
        """Each file's rows as Arrow tables of at most `batch_size` rows, constants appended.

        An empty file gives one empty table, so its schema still travels.
        """
        for spec in self.spec.files:
            with self._tap.file_store.open(spec.path) as handle, pq.ParquetFile(handle) as parquet:
                if parquet.metadata.num_rows == 0:
                    yield self._stamp(self.arrow_schema.empty_table())
                    continue
                for batch in parquet.iter_batches(batch_size=batch_size):
                    yield self._stamp(pa.Table.from_batches([batch]))

    def get_batches(
        self, batch_config: BatchConfig, context: dict | None = None
    ) -> Iterable[tuple[BaseBatchFileEncoding, list[str]]]:
        """Bulk path: Parquet batch files written from Arrow, no per-row Python."""
        out_dir = storage_dir(batch_config.storage.root)
        prefix = quote(batch_config.storage.prefix or "", safe="")
        stem = f"{prefix}{quote(self.name, safe='')}-{uuid.uuid4().hex}"
        encoding = BaseBatchFileEncoding(format="parquet", compression="none")
        if not self.constants:
            # Nothing to add: each verified file is the batch file. A hard link (a copy across
            # file systems, a download from object storage) hands it over, so a target that
            # deletes its batch files leaves the manifest's file in place, and no row is read
            # or rewritten.
            for index, spec in enumerate(self.spec.files):
                path = out_dir / f"{stem}-{index:05d}.parquet"
                self._tap.file_store.copy_to(spec.path, path)
                yield encoding, [path.as_uri()]
            return
        for index, table in enumerate(self.iter_tables(BATCH_ROWS)):
            path = out_dir / f"{stem}-{index:05d}.parquet"
            pq.write_table(table, path)
            yield encoding, [path.as_uri()]

    def get_records(self, context: dict | None) -> Iterable[dict[str, Any]]:
        for table in self.iter_tables(RECORD_ROWS):
            yield from table.to_pylist()


class TapParquet(Tap):
    """Singer tap for the Parquet files a manifest names."""

    name = "tap-parquet-manifest"
    config_jsonschema = th.PropertiesList(
        th.Property(
            "manifest_file",
            th.StringType,
            required=True,
            description="Path of the JSON manifest naming each stream's Parquet files.",
        ),
        th.Property(
            "constant_columns",
            th.ArrayType(
                th.ObjectType(
                    th.Property("name", th.StringType, required=True),
                    th.Property("type", th.StringType, required=True, allowed_values=list(CONSTANT_TYPES)),
                    th.Property("value", th.CustomType({"type": ["string", "integer"]}), required=True),
                )
            ),
            description="Columns added to every row of every stream, before the manifest's own.",
        ),
        th.Property(
            "storage_options",
            th.ObjectType(additional_properties=True),
            description=(
                "fsspec options for files named by URL, e.g. for s3://: endpoint_url, key, secret, "
                "client_kwargs.region_name; empty values are ignored."
            ),
        ),
        th.Property(
            "verify",
            th.BooleanType,
            default=True,
            description="Check each file's sha256 and row count against the manifest before emitting anything.",
        ),
    ).to_dict()

    @cached_property
    def manifest(self) -> Manifest:
        return load_manifest(self.config["manifest_file"])

    @cached_property
    def file_store(self) -> FileStore:
        options = dict(self.config.get("storage_options") or {})
        if isinstance(options.get("client_kwargs"), dict):
            options["client_kwargs"] = {k: v for k, v in options["client_kwargs"].items() if v not in ("", None)}
        return FileStore(options)

    @cached_property
    def constant_columns(self) -> tuple[ConstantColumn, ...]:
        return merge_constant_columns(
            parse_constant_columns(self.config.get("constant_columns"), "config constant_columns"),
            self.manifest.constant_columns,
        )

    @cached_property
    def arrow_schemas(self) -> dict[str, pa.Schema]:
        """Each stream's schema, once every file has been checked (raises on any problem)."""
        return check_streams(
            self.manifest.streams, self.constant_columns, bool(self.config.get("verify", True)), self.file_store
        )

    def discover_streams(self) -> list[Stream]:
        schemas = self.arrow_schemas
        return [ParquetStream(self, spec, schemas[spec.name], self.constant_columns) for spec in self.manifest.streams]

    def load_streams(self) -> list[Stream]:
        """The streams in the manifest's order (the SDK would sort them by name)."""
        return self.discover_streams()

    def sync_all(self) -> None:
        self.arrow_schemas  # noqa: B018 - verification happens before the first message
        super().sync_all()


__all__ = ["ManifestError", "ParquetStream", "TapParquet", "jsonschema_of"]
