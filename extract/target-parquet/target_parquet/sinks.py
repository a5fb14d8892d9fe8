"""One Parquet file per stream, written incrementally under a temporary name."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from singer_sdk.helpers._batch import BaseBatchFileEncoding, BatchFileFormat
from singer_sdk.sinks import BatchSink

from target_parquet.types import arrow_schema, conform, records_to_table


class ParquetSink(BatchSink):
    """Buffers records (or takes whole BATCH files) and appends them as row groups."""

    MAX_SIZE_DEFAULT = 50_000

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.arrow_schema = arrow_schema(self.schema)
        self._writer: pq.ParquetWriter | None = None

    @property
    def table_name(self) -> str:
        prefix = self.config.get("stream_prefix_to_strip", "public-")
        name = self.stream_name
        return name[len(prefix) :] if prefix and name.startswith(prefix) else name

    @property
    def final_path(self) -> Path:
        return Path(self.config["staging_dir"]) / f"{self.table_name}.parquet"

    @property
    def temp_path(self) -> Path:
        return self.final_path.with_name(f".{self.final_path.name}.{os.getpid()}-{id(self)}.tmp")

    def _append(self, table: Any) -> None:
        if self._writer is None:
            self.final_path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(self.temp_path, self.arrow_schema, compression="zstd")
        if table.num_rows:
            self._writer.write_table(table)

    def process_batch(self, context: dict) -> None:
        self._append(records_to_table(context["records"], self.arrow_schema))

    def process_batch_files(self, encoding: BaseBatchFileEncoding, files: list[str]) -> None:
        if encoding.format != BatchFileFormat.PARQUET:
            super().process_batch_files(encoding, files)
            return
        # Bulk path: a tap's Parquet batch files become row groups without per-row Python.
        for url in files:
            path = url.removeprefix("file://")
            self._append(conform(pq.read_table(path), self.arrow_schema))
            Path(path).unlink()  # the tap's batch file is a hand-off, not an output

    def clean_up(self) -> None:
        """Close the file (an empty table still gets one, carrying its schema) and rename it."""
        self._append(self.arrow_schema.empty_table())
        assert self._writer is not None
        self._writer.close()
        self._writer = None
        if self.final_path.exists():
            # The stream's schema changed mid-run: the SDK retired the earlier sink, whose
            # file is already final. One file per table, so merge under the widest schema.
            merged = pa.concat_tables(
                [pq.read_table(self.final_path), pq.read_table(self.temp_path)], promote_options="permissive"
            )
            pq.write_table(merged, self.temp_path, compression="zstd")
        os.replace(self.temp_path, self.final_path)
        super().clean_up()
