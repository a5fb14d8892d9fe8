"""target-postgres-arrow: meltanolabs-target-postgres plus Parquet BATCH files through ADBC bulk ingest."""

from __future__ import annotations

import typing as t

from singer_sdk import typing as th
from target_postgres.target import TargetPostgres

from target_postgres_arrow.ingest import AdbcSessions, IngestQueue, default_parallel_tables
from target_postgres_arrow.sinks import ArrowPostgresSink

if t.TYPE_CHECKING:
    from typing import IO

_EXTRA_SETTINGS = th.PropertiesList(
    th.Property(
        "delete_batch_files",
        th.BooleanType,
        default=False,
        description="Delete each local Parquet BATCH file after its rows are committed.",
    ),
    th.Property(
        "max_parallel_tables",
        th.IntegerType,
        description=(
            "Tables whose Parquet BATCH files are loaded at once, each file over its own connection in "
            "its own transaction; a table's files stay in order. Default: min(4, the machine's CPUs); "
            "1 loads one file after another."
        ),
    ),
).to_dict()


class TargetPostgresArrow(TargetPostgres):
    """meltanolabs-target-postgres whose Parquet BATCH files are bulk-loaded with ADBC, typed from Arrow."""

    name = "target-postgres-arrow"
    package_name = "target-postgres-arrow"
    config_jsonschema = {
        **TargetPostgres.config_jsonschema,
        "properties": {**TargetPostgres.config_jsonschema["properties"], **_EXTRA_SETTINGS["properties"]},
    }
    default_sink_class = ArrowPostgresSink

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        self._ingest: IngestQueue | None = None
        # The ADBC connections of the run, kept from one BATCH message to the next.
        self.adbc_sessions = AdbcSessions()
        super().__init__(*args, **kwargs)

    @property
    def ingest(self) -> IngestQueue | None:
        """The pool that loads BATCH files (started at the first file); None: load them in turn."""
        if self._ingest is None:
            workers = int(self.config.get("max_parallel_tables") or default_parallel_tables())
            if workers > 1:
                self._ingest = IngestQueue(workers)
        return self._ingest

    @property
    def started_ingest(self) -> IngestQueue | None:
        return self._ingest

    def drain_all(self, *, is_endofpipe: bool = False) -> None:
        """Every file handed over is loaded (or the first failure raised) before the sinks drain
        and the SDK emits STATE."""
        if self._ingest is not None:
            self._ingest.wait_all()
        super().drain_all(is_endofpipe=is_endofpipe)

    def listen(self, file_input: IO[str] | None = None) -> None:
        try:
            super().listen(file_input)
        finally:
            if self._ingest is not None:
                self._ingest.close()
                self._ingest = None
            self.adbc_sessions.close()


if __name__ == "__main__":
    TargetPostgresArrow.cli()
