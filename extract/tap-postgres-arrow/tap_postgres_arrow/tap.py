"""tap-postgres-arrow: meltanolabs-tap-postgres whose BATCH path reads tables with ADBC into exact Parquet."""

from __future__ import annotations

import typing as t

from tap_postgres.client import PostgresLogBasedStream
from tap_postgres.tap import TapPostgres

from tap_postgres_arrow.stream import PostgresArrowStream, TableExtractionError

if t.TYPE_CHECKING:
    from collections.abc import Sequence

    from singer_sdk import Stream


class ExtractionFailedError(RuntimeError):
    """Raised at the end of sync_all when one or more tables could not be extracted exactly."""


class TapPostgresArrow(TapPostgres):
    """TapPostgres; with ``batch_config`` its FULL_TABLE/INCREMENTAL streams emit Parquet BATCH files."""

    name = "tap-postgres-arrow"
    package_name = "tap-postgres-arrow"
    default_stream_class = PostgresArrowStream

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        self.arrow_failures: list[TableExtractionError] = []
        super().__init__(*args, **kwargs)

    def discover_streams(self) -> Sequence[Stream]:
        """The parent's streams, with PostgresArrowStream in place of PostgresStream (LOG_BASED unchanged)."""
        connector = self.connector  # also sets self.connection_parameters
        streams: list[Stream] = []
        for entry in self.catalog_dict["streams"]:
            if entry["replication_method"] == "LOG_BASED":
                streams.append(
                    PostgresLogBasedStream(
                        self, entry, connection_parameters=self.connection_parameters, connector=connector
                    )
                )
            else:
                streams.append(PostgresArrowStream(self, entry, connector=connector))
        return streams

    def sync_all(self) -> None:
        """Sync every stream; tables that fail on the ADBC path are listed in one error at the end."""
        self.arrow_failures = []
        super().sync_all()
        if self.arrow_failures:
            listed = "; ".join(str(f) for f in self.arrow_failures)
            msg = (
                f"tables that could not be extracted exactly: {listed}; exclude them with a select rule or map the type"
            )
            raise ExtractionFailedError(msg)


if __name__ == "__main__":
    TapPostgresArrow.cli()
