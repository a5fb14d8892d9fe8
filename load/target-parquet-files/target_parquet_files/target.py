"""target-parquet-files: one typed Parquet file per stream, made visible only once complete."""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any

from singer_sdk import typing as th
from singer_sdk.target_base import Target

from target_parquet_files.sinks import DEFAULT_COMPRESSION, ParquetSink


class TargetParquet(Target):
    """Writes each stream to ``{output_dir}/{encoded table name}.parquet``."""

    name = "target-parquet-files"
    default_sink_class = ParquetSink

    config_jsonschema = th.PropertiesList(
        th.Property(
            "output_dir",
            th.StringType,
            required=True,
            description="Directory that receives one Parquet file per stream (created if missing)",
        ),
        th.Property(
            "stream_prefix_to_strip",
            th.StringType,
            default="",
            description="Prefix removed from the start of stream names to get table names, e.g. 'public-'",
        ),
        th.Property(
            "compression",
            th.StringType,
            default=DEFAULT_COMPRESSION,
            description="Parquet compression codec (zstd, snappy, gzip, brotli, lz4, none)",
        ),
    ).to_dict()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.written_paths: set[Path] = set()
        super().__init__(*args, **kwargs)

    def listen(self, file_input: IO[str] | None = None) -> None:
        try:
            super().listen(file_input)
        except BaseException:
            # Unfinished streams leave no temporary files behind; finished ones stay final.
            sinks = [*getattr(self, "_sinks_active", {}).values(), *getattr(self, "_sinks_to_clear", [])]
            for sink in sinks:
                if isinstance(sink, ParquetSink):
                    sink.discard()
            raise
