"""PostgresSink whose Parquet BATCH files go straight into Postgres with ADBC bulk ingest (COPY BINARY)."""

from __future__ import annotations

import os
import typing as t
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import pyarrow as pa
import pyarrow.parquet as pq
from singer_sdk.helpers._batch import BatchFileFormat, StorageTarget
from singer_sdk.helpers.capabilities import TargetLoadMethods
from target_postgres.sinks import PostgresSink

from target_postgres_arrow.adbc import UnsupportedArrowTypeError, adbc_uri, compatible, postgres_type, quote_ident

if t.TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from adbc_driver_manager.dbapi import Connection, Cursor
    from singer_sdk.helpers._batch import BaseBatchFileEncoding

    from target_postgres_arrow.target import TargetPostgresArrow

_COLUMNS_SQL = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod)
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""


# Postgres' unique_violation: a CREATE SCHEMA IF NOT EXISTS that lost a race to another.
UNIQUE_VIOLATION = "23505"


class BatchLoadError(RuntimeError):
    """A Parquet BATCH file cannot be loaded into its table."""


class ArrowPostgresSink(PostgresSink):
    """RECORD messages: the parent's stock path. Parquet BATCH files: ADBC bulk ingest, typed from Arrow.

    The parent's `setup()` (CREATE TABLE from the JSON Schema) is deferred to the first RECORD batch,
    so a stream fed with Parquet BATCH files gets its table from the files' Arrow schema instead.
    Files may be loaded on the target's threads (`target_postgres_arrow.ingest`): whatever must come
    after them waits for the table's loads first.
    """

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        self._arrow_target: TargetPostgresArrow = kwargs["target"] if "target" in kwargs else args[0]
        super().__init__(*args, **kwargs)

    def setup(self) -> None:
        """Defer the parent's table creation: the first RECORD batch or the end of the stream does it."""
        self.append_only = not self.key_properties
        self._stock_setup_done = False
        self._batch_files_received = 0
        self._batch_files_loaded = 0

    @property
    def ingest_key(self) -> tuple[str | None, str]:
        """The table the stream's files go to: its loads run one after another."""
        return self.schema_name, self.table_name

    def _wait_for_loads(self) -> None:
        ingest = self._arrow_target.started_ingest
        if ingest is not None:
            ingest.wait(self.ingest_key)

    def _stock_setup(self) -> None:
        if not self._stock_setup_done:
            super().setup()
            self._stock_setup_done = True

    def process_batch(self, context: dict[str, t.Any]) -> None:
        """RECORD messages (and JSONL BATCH files): the parent's path, after its deferred setup."""
        self._wait_for_loads()
        self._stock_setup()
        super().process_batch(context)

    def clean_up(self) -> None:
        """A stream that received neither RECORDs nor BATCH files gets its table as the parent would."""
        self._wait_for_loads()
        if not self._stock_setup_done and not self._batch_files_loaded:
            self._stock_setup()
        super().clean_up()

    def activate_version(self, new_version: int) -> None:
        """Ignored for streams loaded from BATCH files: their rows carry no `_sdc_table_version`."""
        self._wait_for_loads()
        if self._batch_files_loaded:
            self.logger.warning(
                "ACTIVATE_VERSION for stream '%s' ignored: it was loaded from BATCH files, whose rows "
                "carry no table version, so no row would be kept.",
                self.stream_name,
            )
            return
        super().activate_version(new_version)

    # BATCH path

    def process_batch_files(self, encoding: BaseBatchFileEncoding, files: Sequence[str]) -> None:
        """Load Parquet files with ADBC bulk ingest, one transaction per file (on the target's threads
        when `max_parallel_tables` is above 1); other encodings: the parent's path."""
        if encoding.format != BatchFileFormat.PARQUET:
            super().process_batch_files(encoding, files)
            return
        load_method = self.config.get("load_method", TargetLoadMethods.APPEND_ONLY)
        if load_method != TargetLoadMethods.APPEND_ONLY:
            msg = (
                f"Stream '{self.stream_name}': load_method '{load_method}' is not supported for Parquet BATCH "
                "files (they are appended); use load_method 'append-only' or send RECORD messages."
            )
            raise BatchLoadError(msg)
        if self.key_properties and not self._batch_files_received:
            self.logger.info(
                "Stream '%s' has key properties %s: Parquet BATCH files are appended, not merged on them.",
                self.stream_name,
                list(self.key_properties),
            )
        files = list(files)
        self._batch_files_received += len(files)
        ingest = self._arrow_target.ingest
        if ingest is None:
            self._load_files(files)
        else:
            ingest.submit(self.ingest_key, lambda: self._load_files(files))

    def _load_files(self, files: list[str]) -> None:
        """Load the files of one BATCH message over one connection (kept for the next message),
        each in its own transaction."""
        with self._arrow_target.adbc_sessions.session(adbc_uri(self.connector.sqlalchemy_url)) as connection:
            for url in files:
                rows = self._load_file(connection, url)
                self._batch_files_loaded += 1
                self.record_counter_metric.increment(rows)
                self.tally_record_written(rows)
                if self.config.get("delete_batch_files"):
                    self._delete(url)

    @staticmethod
    def local_path(url: str) -> Path | None:
        """Local path of a file:// URL (percent-decoded) or a plain path; None for remote URLs."""
        parsed = urlparse(url)
        if parsed.scheme == "file":
            return Path(url2pathname(parsed.path))
        if parsed.scheme == "" or (len(parsed.scheme) == 1 and os.name == "nt"):
            return Path(url)
        return None

    @contextmanager
    def _open(self, url: str) -> Iterator[pq.ParquetFile]:
        path = self.local_path(url)
        if path is not None:
            with pq.ParquetFile(path) as parquet_file:
                yield parquet_file
            return
        head, tail = StorageTarget.split_url(url)
        storage = self.batch_config.storage if self.batch_config else None
        with (storage or StorageTarget.from_url(head)).open(tail, mode="rb") as raw, pq.ParquetFile(raw) as pf:
            yield pf

    def _delete(self, url: str) -> None:
        path = self.local_path(url)
        if path is None:
            self.logger.warning("delete_batch_files: '%s' is not a local file; left in place.", url)
            return
        path.unlink(missing_ok=True)

    def _load_file(self, connection: Connection, url: str) -> int:
        """Ingest one Parquet file into the stream's table in one transaction; return its row count."""
        schema_name = self.schema_name
        table = self.table_name
        with self._open(url) as parquet_file:
            arrow_schema = parquet_file.schema_arrow
            file_types = self._file_types(arrow_schema, url)
            with connection.cursor() as cursor:
                if schema_name is None:
                    cursor.execute("SELECT current_schema()")
                    schema_name = cursor.fetchone()[0]
                else:
                    self._create_schema(connection, cursor, schema_name)
                cursor.execute(_COLUMNS_SQL, (schema_name, table))
                table_types = dict(cursor.fetchall())
                qualified = f"{quote_ident(schema_name)}.{quote_ident(table)}"
                for column, file_type in file_types.items() if table_types else ():  # else ADBC creates it
                    table_type = table_types.get(column)
                    if table_type is None:
                        self.logger.info("Stream '%s': adding column %s %s", self.stream_name, column, file_type)
                        cursor.execute(f"ALTER TABLE {qualified} ADD COLUMN {quote_ident(column)} {file_type}")
                    elif not compatible(table_type, file_type):
                        connection.rollback()
                        msg = (
                            f"Stream '{self.stream_name}', column '{column}': table {qualified} has type "
                            f"'{table_type}' but the BATCH file has Arrow type {arrow_schema.field(column).type} "
                            f"(Postgres '{file_type}'); file {url}"
                        )
                        raise BatchLoadError(msg)
                reader = pa.RecordBatchReader.from_batches(arrow_schema, parquet_file.iter_batches())
                try:
                    rows = cursor.adbc_ingest(table, reader, mode="create_append", db_schema_name=schema_name)
                except Exception as exc:
                    connection.rollback()
                    msg = f"Stream '{self.stream_name}': loading {url} into {qualified} failed: {exc}"
                    raise BatchLoadError(msg) from exc
            connection.commit()
        self.logger.info("Stream '%s': loaded %s rows from %s into %s", self.stream_name, rows, url, qualified)
        return int(rows) if rows is not None and rows >= 0 else parquet_file.metadata.num_rows

    @staticmethod
    def _create_schema(connection: Connection, cursor: Cursor, schema_name: str) -> None:
        """CREATE SCHEMA IF NOT EXISTS, first in the file's transaction as always. Two loads of
        different tables creating it at once: the second waits for the first to commit, then
        fails on the name; the schema exists by then, so it starts its transaction again."""
        statement = f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema_name)}"
        try:
            cursor.execute(statement)
        except Exception as exc:
            if getattr(exc, "sqlstate", None) != UNIQUE_VIOLATION:
                raise
            connection.rollback()
            cursor.execute(statement)

    def _file_types(self, arrow_schema: pa.Schema, url: str) -> dict[str, str]:
        types = {}
        for field in arrow_schema:
            try:
                types[field.name] = postgres_type(field.type)
            except UnsupportedArrowTypeError as exc:
                msg = (
                    f"Stream '{self.stream_name}', column '{field.name}': Arrow type {field.type} is not supported "
                    f"for Parquet BATCH loading; file {url}"
                )
                raise BatchLoadError(msg) from exc
        return types
