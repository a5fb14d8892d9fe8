"""tap-postgres-arrow: meltanolabs-tap-postgres whose BATCH path reads tables with ADBC into exact Parquet."""

from __future__ import annotations

import json
import os
import typing as t
from pathlib import Path

import sqlalchemy as sa
from singer_sdk import typing as th
from tap_postgres.client import PostgresLogBasedStream
from tap_postgres.tap import TapPostgres

from tap_postgres_arrow.stream import PostgresArrowStream, TableExtractionError
from tap_postgres_arrow.tables import RELATIONS_SQL, Relation, choose_tables, parse_names

if t.TYPE_CHECKING:
    from collections.abc import Sequence

    from singer_sdk import Stream

# A list of names: a JSON array, or (as Meltano passes an environment variable) its text.
_NAMES = th.CustomType({"type": ["array", "string", "null"], "items": {"type": "string"}})

ARROW_SETTINGS = th.PropertiesList(
    th.Property(
        "include_views",
        _NAMES,
        description=(
            "Views, materialized views and foreign tables to extract, by name (none by default). "
            'A list, or its text: "v1,v2" or a JSON array.'
        ),
    ),
    th.Property(
        "exclude_tables",
        _NAMES,
        description=(
            "Tables (or views) never extracted, by name, in every schema read: e.g. one whose values "
            'cannot be extracted exactly. A list, or its text: "t1,t2" or a JSON array.'
        ),
    ),
    th.Property(
        "failed_tables_file",
        th.StringType,
        description=(
            "When set, the tables that could not be extracted exactly are written to this JSON file "
            "(each failing column with its problem) and the tap exits 0 once the other tables are "
            "done: the caller decides. Unset: the tap ends with ExtractionFailedError."
        ),
    ),
).to_dict()


class ExtractionFailedError(RuntimeError):
    """Raised at the end of sync_all when one or more tables could not be extracted exactly."""


class TapPostgresArrow(TapPostgres):
    """TapPostgres; with ``batch_config`` its FULL_TABLE/INCREMENTAL streams emit Parquet BATCH files."""

    name = "tap-postgres-arrow"
    package_name = "tap-postgres-arrow"
    default_stream_class = PostgresArrowStream
    config_jsonschema = {
        **TapPostgres.config_jsonschema,
        "properties": {**TapPostgres.config_jsonschema["properties"], **ARROW_SETTINGS["properties"]},
    }

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        self.arrow_failures: list[TableExtractionError] = []
        super().__init__(*args, **kwargs)

    @property
    def catalog_dict(self) -> dict:
        """The parent's discovery, keeping only the relations of `tap_postgres_arrow.tables`' rule.

        A catalog given with --catalog is used as it is."""
        if self._catalog_dict or self.input_catalog:
            return super().catalog_dict
        streams = super().catalog_dict["streams"]
        self._catalog_dict = {"streams": self._chosen_streams(streams)}
        return self._catalog_dict

    def _chosen_streams(self, streams: list[dict]) -> list[dict]:
        def key(entry: dict) -> tuple[str, str]:
            root = next(m["metadata"] for m in entry["metadata"] if not m["breadcrumb"])
            return root.get("schema-name"), entry["table_name"]

        schemas = sorted({key(entry)[0] for entry in streams})
        if not schemas:
            return streams
        with self.connector._connect() as conn:
            rows = conn.execute(sa.text(RELATIONS_SQL), {"schemas": schemas}).mappings().all()
        relations = {
            (r["schema_name"], r["name"]): Relation(
                r["schema_name"], r["name"], r["kind"], r["is_partition"], r["readable"]
            )
            for r in rows
        }
        choice = choose_tables(
            [relations[key(entry)] for entry in streams if key(entry) in relations],
            parse_names(self.config.get("include_views")),
            parse_names(self.config.get("exclude_tables")),
        )
        if choice.unreadable:
            self.logger.warning(
                "Skipping %s: the role may not SELECT from them (GRANT SELECT to extract them, "
                "or list them in exclude_tables to silence this)",
                ", ".join(r.label for r in choice.unreadable),
            )
        for what, left_out in (
            ("partitions (their rows come through their parent)", choice.partitions),
            ("views not listed in include_views", choice.views_not_included),
            ("tables listed in exclude_tables", choice.excluded),
        ):
            if left_out:
                self.logger.info("Leaving out %s: %s", what, ", ".join(r.label for r in left_out))
        kept = {(r.schema, r.name) for r in choice.extracted}
        return [entry for entry in streams if key(entry) in kept]

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
        """Sync every stream; tables that fail on the ADBC path are listed in one error at the end
        (or in `failed_tables_file`)."""
        self.arrow_failures = []
        super().sync_all()
        report = self.config.get("failed_tables_file")
        if report:
            _write_report(Path(report), self.arrow_failures)
            if self.arrow_failures:
                self.logger.error(
                    "%d table(s) could not be extracted exactly; listed in %s", len(self.arrow_failures), report
                )
            return
        if self.arrow_failures:
            listed = "; ".join(str(f) for f in self.arrow_failures)
            names = json.dumps(sorted({f.name for f in self.arrow_failures}), ensure_ascii=False)
            msg = (
                f"tables that could not be extracted exactly: {listed}; leave them out with "
                f"exclude_tables: {names}, or fix the values at the source"
            )
            raise ExtractionFailedError(msg)


def _write_report(path: Path, failures: list[TableExtractionError]) -> None:
    """The failing tables, written whole or not at all (a reader never sees half a report)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps({"tables": [f.as_dict() for f in failures]}, indent=2, ensure_ascii=False) + "\n")
    os.replace(temporary, path)


if __name__ == "__main__":
    TapPostgresArrow.cli()
