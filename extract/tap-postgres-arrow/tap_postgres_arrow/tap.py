"""tap-postgres-arrow: meltanolabs-tap-postgres whose BATCH path reads tables with ADBC into exact Parquet."""

from __future__ import annotations

import copy
import json
import logging
import os
import typing as t
from functools import cached_property
from pathlib import Path

import sqlalchemy as sa
from singer_sdk import typing as th
from singer_sdk.singerlib.catalog import REPLICATION_FULL_TABLE
from sqlalchemy.dialects import postgresql
from tap_postgres.client import PostgresLogBasedStream
from tap_postgres.tap import TapPostgres

from tap_postgres_arrow.discovery_cache import Cached, DiscoveryCache, source_fingerprint
from tap_postgres_arrow.readahead import TableReadAhead, default_parallel_tables
from tap_postgres_arrow.stream import AdbcSessions, PostgresArrowStream, TableExtractionError, adbc_uri
from tap_postgres_arrow.tables import RELATIONS_SQL, Relation, choose_tables, parse_names

if t.TYPE_CHECKING:
    from collections.abc import Sequence

    from singer_sdk import Stream
    from tap_postgres.client import PostgresConnector

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
    th.Property(
        "discovery_cache_dir",
        th.StringType,
        description=(
            "When set, the discovered catalog is kept in this folder and reused while the source's "
            "catalog (one pg_catalog query's digest), the settings and the tap are unchanged; a new, "
            "dropped or altered table or column is discovered on the same run. Unset: every run discovers."
        ),
    ),
    th.Property(
        "max_parallel_tables",
        th.IntegerType,
        description=(
            "FULL_TABLE tables read at once on the BATCH path, each into its own files; the messages "
            "keep the order of a sequential run. Default: min(4, the machine's CPUs); 1 reads one "
            "table after another."
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
        self.read_ahead: TableReadAhead | None = None
        self.adbc_sessions: AdbcSessions | None = None
        # The settings as given (the SDK adds defaults in place): the discovery cache's key, the
        # same as `tap_postgres_arrow.cli` reads from the --config files. None: no cache (from
        # environment variables, which the CLI's fast answer does not read).
        given = kwargs.get("config")
        self._given_config = copy.deepcopy(given) if isinstance(given, dict) else None
        if kwargs.get("parse_env_config"):
            self._given_config = None
        super().__init__(*args, **kwargs)

    @cached_property
    def connector(self) -> PostgresConnector:
        """The parent's connector (one for the tap and its streams), its dialect told what `bpchar` is."""
        connector = TapPostgres.connector.func(self)
        _know_unbounded_char(connector._engine.dialect)
        return connector

    @property
    def catalog_dict(self) -> dict:
        """The parent's discovery, keeping only the relations of `tap_postgres_arrow.tables`' rule;
        with `discovery_cache_dir`, the stored one while the source's fingerprint is unchanged.

        A catalog given with --catalog is used as it is."""
        if self._catalog_dict or self.input_catalog:
            return super().catalog_dict
        cache = self._discovery_cache()
        if cache is None:
            self._catalog_dict = self._discover()
            return self._catalog_dict
        before = self._fingerprint()
        cached = cache.load(before)
        if cached is not None:
            self._log_notes(cached.notes)
            self._catalog_dict = json.loads(cached.catalog)
            return self._catalog_dict
        self._catalog_dict = self._discover()
        # Stored only if the source did not change during the discovery: the catalog is then
        # the one of that fingerprint.
        if self._fingerprint() == before:
            cache.store(before, Cached(self.catalog_json_text, self._notes))
        return self._catalog_dict

    def _discovery_cache(self) -> DiscoveryCache | None:
        directory = self.config.get("discovery_cache_dir")
        if not directory or self._given_config is None:
            return None
        return DiscoveryCache(directory, self._given_config)

    def _fingerprint(self) -> str:
        schemas = self.config.get("filter_schemas") or []
        with self.connector._connect() as conn:
            cursor = conn.connection.cursor()
            try:
                return source_fingerprint(cursor, schemas)
            finally:
                cursor.close()

    def _discover(self) -> dict:
        self._notes: list[tuple[int, str]] = []
        streams = super().catalog_dict["streams"]
        catalog = {"streams": self._chosen_streams(streams)}
        self._log_notes(self._notes)
        return catalog

    def _log_notes(self, notes: list[tuple[int, str]]) -> None:
        for level, text in notes:
            self.logger.log(level, "%s", text)

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
        # What the choice leaves out, logged by the caller (and replayed from the discovery cache).
        if choice.unreadable:
            self._notes.append(
                (
                    logging.WARNING,
                    f"Skipping {', '.join(r.label for r in choice.unreadable)}: the role may not SELECT from "
                    "them (GRANT SELECT to extract them, or list them in exclude_tables to silence this)",
                )
            )
        for what, left_out in (
            ("partitions (their rows come through their parent)", choice.partitions),
            ("views not listed in include_views", choice.views_not_included),
            ("tables listed in exclude_tables", choice.excluded),
        ):
            if left_out:
                self._notes.append((logging.INFO, f"Leaving out {what}: {', '.join(r.label for r in left_out)}"))
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
        workers = int(self.config.get("max_parallel_tables") or default_parallel_tables())
        self.read_ahead = TableReadAhead(workers, self._read_ahead_streams) if workers > 1 else None
        self.adbc_sessions = AdbcSessions(lambda: adbc_uri(self.connection_parameters))
        try:
            super().sync_all()
        finally:
            if self.read_ahead is not None:
                self.read_ahead.close()
            self.read_ahead = None
            self.adbc_sessions.close()
            self.adbc_sessions = None
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

    def _read_ahead_streams(self) -> list[PostgresArrowStream]:
        """The FULL_TABLE streams the SDK will sync on the BATCH path, in its order (sync_all's)."""
        streams = [
            stream
            for stream in self.streams.values()
            if isinstance(stream, PostgresArrowStream)
            and stream.selected
            and not stream.parent_stream_type
            and stream.replication_method == REPLICATION_FULL_TABLE
        ]
        if streams:
            streams[0].connector._engine  # noqa: B018 - created here, not by two threads at once
        return streams


def _know_unbounded_char(dialect: sa.Dialect) -> None:
    """Postgres names a character column without a length `bpchar` (format_type), a name SQLAlchemy
    2.0's reflection does not know: it typed such a column NullType and warned (a SAWarning in the
    log for each one, on every discovery). It is CHAR without a length; the SDK gives it the same
    JSON schema (a string), and the BATCH path reads each column's real type from Postgres anyway."""
    if "bpchar" not in dialect.ischema_names:
        dialect.ischema_names = {**dialect.ischema_names, "bpchar": postgresql.CHAR}


def _write_report(path: Path, failures: list[TableExtractionError]) -> None:
    """The failing tables, written whole or not at all (a reader never sees half a report)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps({"tables": [f.as_dict() for f in failures]}, indent=2, ensure_ascii=False) + "\n")
    os.replace(temporary, path)


if __name__ == "__main__":
    TapPostgresArrow.cli()
