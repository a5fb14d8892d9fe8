"""tap-typed-csv: one stream per entry of the `files` setting, typed by its declared columns."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from uuid import uuid4

from singer_sdk import Stream, Tap
from singer_sdk import typing as th

from tap_typed_csv.reader import (
    TYPE_NAMES,
    CsvContractError,
    FileSpec,
    file_signature,
    iter_batches,
    parse_files,
    to_json_columns,
    validate,
)

if TYPE_CHECKING:
    import pyarrow.parquet as pq
    from singer_sdk.helpers._batch import BaseBatchFileEncoding, BatchConfig
    from upath import UPath

ROWS_PER_BATCH_FILE = 500_000  # when batch_config has no batch_size
RECORD_CHUNK = 10_000


class CsvStream(Stream):
    """One CSV file. Nothing leaves before the whole file has been checked."""

    def __init__(self, tap: Tap, spec: FileSpec) -> None:
        self.spec = spec
        super().__init__(tap, schema=spec.json_schema(), name=spec.stream)
        self.primary_keys = list(spec.key)

    def get_records(self, context: dict | None) -> Iterable[dict[str, Any]]:
        # Two passes: the first checks the whole file (flat memory, nothing kept), the second emits.
        before = file_signature(self.spec.path) if self.spec.path.is_file() else None
        rows = validate(self.spec)
        if file_signature(self.spec.path) != before:
            raise CsvContractError(f"{self.spec.path}: the file changed while it was being read")
        emitted = 0
        for batch in iter_batches(self.spec):
            json_batch = to_json_columns(batch)
            for start in range(0, json_batch.num_rows, RECORD_CHUNK):
                yield from json_batch.slice(start, RECORD_CHUNK).to_pylist()
            emitted += batch.num_rows
        if emitted != rows:
            raise CsvContractError(f"{self.spec.path}: the file changed while it was being read")

    def get_batches(
        self, batch_config: BatchConfig, context: dict | None = None
    ) -> Iterable[tuple[BaseBatchFileEncoding, list[str]]]:
        """Parquet batch files typed with the declared Arrow types, written straight from pyarrow.

        The files are written while the CSV is read; the BATCH messages leave only once the whole
        file has been read and checked. On a bad file, the files written so far are removed.
        """
        if batch_config.encoding.format != "parquet":
            yield from super().get_batches(batch_config, context)
            return
        # Imported here: discovery and --about do not write Parquet.
        import pyarrow.parquet as pq
        from upath import UPath

        raw = self.config.get("batch_config") or {}
        rows_per_file = int(raw.get("batch_size") or ROWS_PER_BATCH_FILE)
        storage = batch_config.storage
        root = UPath(storage.root, **(storage.params or {})).resolve()  # as the SDK's StorageTarget does
        # zstd, the codec target-parquet-files writes, so it can take the file as is.
        compression = batch_config.encoding.compression or "zstd"
        sync_id = f"{self.tap_name}--{self.name}-{uuid4()}"
        written: list[UPath] = []
        writer: pq.ParquetWriter | None = None
        handle = None
        in_file = 0

        def close() -> None:
            nonlocal writer, handle
            if writer is not None:
                writer.close()
                handle.close()
            writer, handle = None, None

        try:
            root.mkdir(parents=True, exist_ok=True)
            for batch in iter_batches(self.spec):
                offset = 0
                while offset < batch.num_rows:
                    if writer is None:
                        target = root / f"{storage.prefix or ''}{sync_id}={len(written) + 1}.parquet"
                        written.append(target)
                        handle = target.open("wb")
                        writer = pq.ParquetWriter(handle, self.spec.arrow_schema, compression=compression)
                        in_file = 0
                    take = min(rows_per_file - in_file, batch.num_rows - offset)
                    writer.write_batch(batch.slice(offset, take))
                    offset += take
                    in_file += take
                    if in_file >= rows_per_file:
                        close()
            close()
        except BaseException:
            close()
            for target in written:
                target.unlink(missing_ok=True)
            raise
        for target in written:
            yield batch_config.encoding, [target.as_uri()]  # file:///abs/path for local storage


class TapCSV(Tap):
    name = "tap-typed-csv"
    config_jsonschema = th.PropertiesList(
        th.Property(
            "files",
            th.ArrayType(
                th.ObjectType(
                    th.Property("stream", th.StringType, required=True, description="Stream name"),
                    th.Property("path", th.StringType, required=True, description="Path of the CSV file"),
                    th.Property(
                        "key",
                        th.ArrayType(th.StringType),
                        description="Primary key column(s); each must be in columns",
                    ),
                    th.Property(
                        "columns",
                        th.ObjectType(additional_properties=th.StringType),
                        required=True,
                        description=(
                            "Ordered column name -> type; the header must list exactly these columns in this "
                            f"order. Types: {', '.join(TYPE_NAMES)}"
                        ),
                    ),
                )
            ),
            required=True,
            description="The CSV files to read, one stream each",
        ),
    ).to_dict()

    def discover_streams(self) -> list[Stream]:
        return [CsvStream(self, spec) for spec in parse_files(self.config.get("files"))]
