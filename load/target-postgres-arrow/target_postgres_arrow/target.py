"""target-postgres-arrow: meltanolabs-target-postgres plus Parquet BATCH files through ADBC bulk ingest."""

from __future__ import annotations

from singer_sdk import typing as th
from target_postgres.target import TargetPostgres

from target_postgres_arrow.sinks import ArrowPostgresSink

_EXTRA_SETTINGS = th.PropertiesList(
    th.Property(
        "delete_batch_files",
        th.BooleanType,
        default=False,
        description="Delete each local Parquet BATCH file after its rows are committed.",
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


if __name__ == "__main__":
    TargetPostgresArrow.cli()
