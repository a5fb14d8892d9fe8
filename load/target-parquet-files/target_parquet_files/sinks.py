"""One Parquet file per stream, written incrementally under a temporary name."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse
from urllib.request import url2pathname

import pyarrow as pa
import pyarrow.parquet as pq
from singer_sdk.helpers._batch import BaseBatchFileEncoding, BatchFileFormat
from singer_sdk.sinks import BatchSink

from target_parquet_files.naming import output_path
from target_parquet_files.types import adopt, arrow_schema, records_to_table

if TYPE_CHECKING:
    from collections.abc import Sequence

    from singer_sdk.target_base import Target

DEFAULT_COMPRESSION = "zstd"


def local_path(url: str) -> Path | None:
    """The local path of a ``file:`` URI (percent-decoded), a bare path as is; None for other schemes."""
    parsed = urlparse(url)
    if parsed.scheme == "":
        return Path(url)
    if parsed.scheme != "file":
        return None
    if parsed.netloc not in ("", "localhost"):
        msg = f"Batch file {url!r} is on another host ({parsed.netloc}); only local files are supported"
        raise ValueError(msg)
    return Path(url2pathname(parsed.path))


class ParquetSink(BatchSink):
    """Buffers records (or takes whole BATCH files) and appends them as row groups."""

    MAX_SIZE_DEFAULT = 50_000

    def __init__(
        self,
        target: Target,
        stream_name: str,
        schema: dict,
        key_properties: Sequence[str] | None,
    ) -> None:
        super().__init__(target, stream_name, schema, key_properties)
        self.arrow_schema = arrow_schema(self.schema)
        self.compression = self.config.get("compression") or DEFAULT_COMPRESSION
        # Final files already written by this target run (shared by all its sinks); a file
        # there that is not in this set is left over from an earlier run and gets replaced.
        self._written: set[Path] = getattr(target, "written_paths", set())
        self.output_dir = Path(self.config["output_dir"])
        self.final_path = output_path(self.output_dir, self.table_name, stream=stream_name)
        self.temp_path = self.final_path.with_name(f".{self.final_path.name}.{os.getpid()}-{id(self)}.tmp")
        self._writer: pq.ParquetWriter | None = None

    @property
    def table_name(self) -> str:
        prefix = self.config.get("stream_prefix_to_strip") or ""
        name = self.stream_name
        return name[len(prefix) :] if prefix and name.startswith(prefix) else name

    def _append(self, table: pa.Table) -> None:
        if self._writer is None:
            # The first table fixes the file's schema: the JSON Schema's for records, the
            # batch file's own (exact types, field metadata) for BATCH files.
            self.output_dir.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(self.temp_path, table.schema, compression=self.compression)
        elif table.schema != self._writer.schema:
            try:
                table = table.select(self._writer.schema.names).cast(self._writer.schema)
            except (KeyError, ValueError, pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
                msg = (
                    f"stream {self.stream_name!r}: a batch's columns or types differ from the stream's file "
                    f"({err}); one file per stream needs one schema"
                )
                raise ValueError(msg) from None
        if table.num_rows:
            self._writer.write_table(table)

    def process_batch(self, context: dict) -> None:
        self._append(records_to_table(context["records"], self.arrow_schema))

    def process_batch_files(self, encoding: BaseBatchFileEncoding, files: Sequence[str]) -> None:
        if encoding.format != BatchFileFormat.PARQUET:
            super().process_batch_files(encoding, files)
            return
        # Bulk path: a tap's Parquet batch files become row groups without per-row Python.
        for url in files:
            path = local_path(url)
            if path is None:  # remote storage: the SDK's generic reader handles it
                super().process_batch_files(encoding, [url])
                continue
            table = adopt(pq.read_table(path), self.arrow_schema)
            self._append(table)
            self.record_counter_metric.increment(table.num_rows)
            path.unlink()  # the tap's batch file is a hand-off, not an output

    def clean_up(self) -> None:
        """Close the file (an empty table still gets one, carrying its schema) and rename it."""
        self._append(self._writer.schema.empty_table() if self._writer else self.arrow_schema.empty_table())
        assert self._writer is not None
        self._writer.close()
        self._writer = None
        if self.final_path in self._written:
            # The stream's schema changed mid-run: the SDK retired the earlier sink, whose
            # file is already final. One file per table, so merge under the widest schema.
            merged = pa.concat_tables(
                [pq.read_table(self.final_path), pq.read_table(self.temp_path)], promote_options="permissive"
            )
            pq.write_table(merged, self.temp_path, compression=self.compression)
        os.replace(self.temp_path, self.final_path)
        self._written.add(self.final_path)
        super().clean_up()

    def discard(self) -> None:
        """Drop the unfinished file after a failure; the final name is never touched."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self.temp_path.unlink(missing_ok=True)
