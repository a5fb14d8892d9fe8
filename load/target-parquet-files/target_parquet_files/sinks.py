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

from target_parquet_files.naming import check_fits, output_path
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
        temporary = f".{self.final_path.name}.{os.getpid()}-{id(self)}.tmp"
        self.temp_path = check_fits(self.final_path.with_name(temporary), stream=stream_name)
        # The longest name this sink may write: its temporary name with ".merged" (or ".first").
        check_fits(self.final_path.with_name(temporary + ".merged"), stream=stream_name)
        self._writer: pq.ParquetWriter | None = None
        # Rows of the batch file taken as the output file as is (None: no file taken).
        self._adopted: int | None = None

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
        self._reopen_adopted()
        self._append(records_to_table(context["records"], self.arrow_schema))

    def process_batch_files(self, encoding: BaseBatchFileEncoding, files: Sequence[str]) -> None:
        if encoding.format != BatchFileFormat.PARQUET:
            super().process_batch_files(encoding, files)
            return
        # Bulk path: a tap's Parquet batch files become row groups without per-row Python;
        # the stream's first file, if it already is what this target would write, becomes the
        # output file itself (renamed, not rewritten).
        for url in files:
            path = local_path(url)
            if path is None:  # remote storage: the SDK's generic reader handles it
                super().process_batch_files(encoding, [url])
                continue
            if self._writer is None and self._adopted is None and self._takes_as_is(path):
                rows = pq.read_metadata(path).num_rows
                self.output_dir.mkdir(parents=True, exist_ok=True)
                try:
                    os.replace(path, self.temp_path)
                except OSError:  # another file system: rewrite it below
                    pass
                else:
                    self._adopted = rows
                    self.record_counter_metric.increment(rows)
                    continue
            self._reopen_adopted()
            table = adopt(pq.read_table(path), self.arrow_schema)
            self._append(table)
            self.record_counter_metric.increment(table.num_rows)
            path.unlink()  # the tap's batch file is a hand-off, not an output

    def _takes_as_is(self, path: Path) -> bool:
        """Whether a batch file is, unchanged, the file this sink would write: same schema after
        `adopt`, and every column chunk compressed with this target's codec."""
        try:
            metadata = pq.read_metadata(path)
            schema = pq.read_schema(path)
        except (OSError, pa.ArrowException):
            return False
        if metadata.num_row_groups == 0 or adopt(schema.empty_table(), self.arrow_schema).schema != schema:
            return False
        codec = self.compression.upper()
        return all(
            metadata.row_group(g).column(c).compression.upper() == codec
            for g in range(metadata.num_row_groups)
            for c in range(metadata.num_columns)
        )

    def _reopen_adopted(self) -> None:
        """A second batch for a stream whose first file was taken as is: rewrite it as row groups
        of a new file, so the next rows can be appended."""
        if self._adopted is None:
            return
        adopted = self.temp_path.with_name(self.temp_path.name + ".first")
        os.replace(self.temp_path, adopted)
        self._adopted = None
        with pq.ParquetFile(adopted) as first:
            for group in range(first.num_row_groups):
                self._append(first.read_row_group(group))
        adopted.unlink()

    def clean_up(self) -> None:
        """Close the file (an empty table still gets one, carrying its schema) and rename it."""
        if self._adopted is None:
            self._append(self._writer.schema.empty_table() if self._writer else self.arrow_schema.empty_table())
            assert self._writer is not None
            self._writer.close()
            self._writer = None
        self._adopted = None
        if self.final_path in self._written:
            # The stream's schema changed mid-run: the SDK retired the earlier sink, whose
            # file is already final. One file per table, so merge under the widest schema.
            merged = pa.concat_tables(
                [pq.read_table(self.final_path), pq.read_table(self.temp_path)], promote_options="permissive"
            )
            # A new file, then a rename: the temporary file may be a tap's file taken as is,
            # possibly a hard link to a file that must not change.
            merging = self.temp_path.with_name(self.temp_path.name + ".merged")
            pq.write_table(merged, merging, compression=self.compression)
            os.replace(merging, self.temp_path)
        os.replace(self.temp_path, self.final_path)
        self._written.add(self.final_path)
        super().clean_up()

    def discard(self) -> None:
        """Drop the unfinished file after a failure; the final name is never touched."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._adopted = None
        self.temp_path.unlink(missing_ok=True)
