"""PostgresStream whose BATCH path reads the table with ADBC (COPY BINARY) straight into Parquet."""

from __future__ import annotations

import contextlib
import hashlib
import threading
import typing as t
import urllib.parse
import uuid
from pathlib import Path

import sqlalchemy as sa
from singer_sdk.helpers._batch import BaseBatchFileEncoding
from singer_sdk.singerlib.catalog import REPLICATION_INCREMENTAL
from tap_postgres.client import PostgresStream

# pyarrow and ADBC are imported where a table is read (tap_postgres_arrow.arrow too): a
# discovery run, or a run on the parent's RECORD path, never loads them.
from tap_postgres_arrow.pgtypes import (
    CATALOG_SQL,
    ColumnPlan,
    ColumnValueError,
    PgColumn,
    build_diagnosis,
    build_select,
    diagnosis_checks,
    plan_column,
    quote_ident,
    quote_literal,
)
from tap_postgres_arrow.readahead import ReadStopped

if t.TYPE_CHECKING:
    from collections.abc import Iterator

    import pyarrow as pa
    import pyarrow.parquet as pq
    from singer_sdk.helpers._batch import BatchConfig
    from singer_sdk.helpers.types import Context

BATCH_BYTES = 4 << 20
INHERITED_SQL = (
    "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhparent"
    " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname = :schema AND c.relname = :table AND c.relkind = 'r')"
)
# Session settings that make every ::text rendering and literal deterministic.
SESSION_SETTINGS = {
    "TimeZone": "UTC",
    "DateStyle": "ISO, YMD",
    "IntervalStyle": "postgres",
    "extra_float_digits": "1",
    "bytea_output": "hex",
    "standard_conforming_strings": "on",
}


# Bytes in one file name (ext4, xfs, btrfs, tmpfs...): a batch file's whole name stays within it.
NAME_MAX = 255
# What follows the stem of a batch file's name: "-{uuid hex}-{file number}.parquet" (10 digits kept).
_AFTER_STEM = len("-") + 32 + len("-") + 10 + len(".parquet")
_HASH_MARK = "%~"  # never produced by percent-encoding ('%' is always followed by two hex digits)


def fitted(text: str, limit: int, real: str) -> str:
    """`text` if it takes at most `limit` bytes, else its longest head that leaves room for a mark
    and 16 hex digits of the SHA-256 of `real` (the name it encodes): distinct names stay distinct.
    The head is never cut inside a %XX escape or a UTF-8 character."""
    if len(text.encode()) <= limit:
        return text
    suffix = _HASH_MARK + hashlib.sha256(real.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    head = text.encode()[: max(0, limit - len(suffix))].decode("utf-8", "ignore")
    escape = head.rfind("%")
    if escape != -1 and escape > len(head) - 3:
        head = head[:escape]
    return head + suffix


def batch_stem(prefix: str, stream: str) -> str:
    """`{prefix}{quoted stream name}`, shortened so the whole batch file name fits in NAME_MAX."""
    room = NAME_MAX - _AFTER_STEM
    if len(prefix.encode()) + len(_HASH_MARK) + 16 > room:
        msg = f"batch_config.storage.prefix {prefix!r} is too long: batch file names would pass {NAME_MAX} bytes"
        raise ValueError(msg)
    return fitted(prefix + urllib.parse.quote(stream, safe=""), room, prefix + stream)


class TableExtractionError(RuntimeError):
    """One table could not be extracted exactly; the other tables go on.

    `columns`: every failing column as (column, pg_type, problem), when the failure is in values."""

    def __init__(
        self, table: str, detail: str, columns: t.Sequence[tuple[str, str, str]] = (), *, name: str | None = None
    ) -> None:
        self.table, self.columns = table, list(columns)
        # The table's own name (what exclude_tables lists): a schema may hold dots too.
        self.name = name if name is not None else table.partition(".")[2] or table
        self.detail = "; ".join(f"column {c} {pg}: {problem}" for c, pg, problem in self.columns) or detail
        super().__init__(f"{table} ({self.detail})")

    def as_dict(self) -> dict[str, t.Any]:
        return {
            "table": self.table,
            "schema": self.table.removesuffix("." + self.name),
            "name": self.name,
            "columns": [{"column": c, "pg_type": pg, "problem": p} for c, pg, p in self.columns],
            "detail": self.detail,
        }


def adbc_uri(params: t.Any) -> str:
    """libpq URI from the parent's ConnectionParameters (user/password percent-encoded).

    Never log the result: it holds the password.
    """
    quote = lambda s: urllib.parse.quote(str(s), safe="")  # noqa: E731
    query = dict(params.options)
    host = str(params.host)
    if host.startswith("/"):  # unix socket directory
        query["host"], netloc_host = host, ""
    else:
        netloc_host = f"[{host}]" if ":" in host else quote(host)
    netloc = f"{quote(params.user)}:{quote(params.password)}@{netloc_host}:{int(params.port)}"
    uri = f"postgresql://{netloc}/{quote(params.database)}"
    return uri + ("?" + urllib.parse.urlencode(query) if query else "")


class AdbcSessions:
    """The run's ADBC connections, each kept for the next table once a read is done.

    Opening one costs about 60 ms (authentication, and the driver loads the server's types), a
    small table's read a few. A table's read is still one transaction, ended (rolled back: it only
    reads) before the connection serves another table, so each table reads its own snapshot as
    over a connection of its own; a connection a read failed on is closed, never reused."""

    def __init__(self, uri: t.Callable[[], str]) -> None:
        self._uri = uri  # holds the password: never logged
        self._idle: list[t.Any] = []
        self._open: list[t.Any] = []
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def session(self) -> Iterator[t.Any]:
        import adbc_driver_postgresql.dbapi as adbc

        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = adbc.connect(self._uri())
            with self._lock:
                self._open.append(conn)
        try:
            yield conn
        except BaseException:
            with self._lock:
                self._open.remove(conn)
            conn.close()
            raise
        with self._lock:
            self._idle.append(conn)

    def close(self) -> None:
        with self._lock:
            conns, self._open, self._idle = self._open, [], []
        for conn in conns:
            with contextlib.suppress(Exception):
                conn.close()


def _local_dir(root: str) -> Path:
    parsed = urllib.parse.urlparse(root)
    if parsed.scheme in {"", "file"}:
        return Path(urllib.parse.unquote(parsed.path) if parsed.scheme else root)
    msg = f"batch_config.storage.root must be a local file:// URI, got scheme {parsed.scheme!r}"
    raise ValueError(msg)


class PostgresArrowStream(PostgresStream):
    """Same catalog, schema, RECORD path and state as the parent; BATCH path via ADBC + Parquet."""

    rows_per_file = 1_000_000
    parquet_compression = "zstd"
    # Set by build_arrow_query: read with FROM ONLY, and (plans, WHERE, ORDER BY) for diagnose().
    _only = False
    _query: tuple[list[ColumnPlan], list[str], str | None] | None = None

    @property
    def file_rows(self) -> int:
        """Rows per Parquet file: `batch_config.batch_size` if the config sets it, else ``rows_per_file``."""
        configured = (self.config.get("batch_config") or {}).get("batch_size")
        return int(configured) if configured else self.rows_per_file

    @property
    def table_label(self) -> str:
        entry = self._singer_catalog_entry
        return f"{entry.metadata.root.schema_name}.{entry.table}"

    @property
    def table_name(self) -> str:
        """The table's own name (a table label's part after the schema may itself hold dots)."""
        return self._singer_catalog_entry.table

    def _sync_batches(self, batch_config: BatchConfig, context: Context | None = None) -> None:
        try:
            super()._sync_batches(batch_config, context=context)
        except TableExtractionError as exc:
            self.logger.error("Could not extract %s exactly: %s", exc.table, exc.detail)
            self._tap.arrow_failures.append(exc)  # type: ignore[attr-defined]

    def get_batches(
        self,
        batch_config: BatchConfig,
        context: Context | None = None,
    ) -> Iterator[tuple[BaseBatchFileEncoding, list[str]]]:
        """Stream the table into Parquet files of ``rows_per_file`` rows; one BATCH per file."""
        if context:
            msg = f"Stream '{self.name}' does not support partitioning."
            raise NotImplementedError(msg)
        read_ahead = getattr(self._tap, "read_ahead", None)
        try:
            # A table read ahead (tap_postgres_arrow.readahead) replays its files, then its error.
            read = read_ahead.take(self) if read_ahead is not None else None
            yield from read.replay() if read is not None else self.arrow_batches(batch_config, context)
        except TableExtractionError:
            raise
        except ColumnValueError as exc:
            # The first bad value stops the read; one more scan names every column that has one.
            try:
                columns = self.diagnose() or [(exc.column, exc.pg_type, exc.problem)]
            except Exception as diagnosis:  # the first bad column still names the table's failure
                self.logger.warning("Could not look for more bad columns of %s: %s", self.table_label, diagnosis)
                columns = [(exc.column, exc.pg_type, exc.problem)]
            raise TableExtractionError(self.table_label, str(exc), columns, name=self.table_name) from exc
        except Exception as exc:
            detail = f"{type(exc).__name__}: {exc}"
            raise TableExtractionError(self.table_label, detail, name=self.table_name) from exc

    def diagnose(self) -> list[tuple[str, str, str]]:
        """Every (column, pg_type, problem) whose values the Arrow columns cannot hold, over the
        rows the read selects; one query, run only after a read failed."""
        plans, where, order_by = self._query_parts()
        checks = diagnosis_checks(plans)
        if not checks:
            return []
        entry = self._singer_catalog_entry
        sql = build_diagnosis(
            entry.metadata.root.schema_name,
            entry.table,
            checks,
            where=where,
            order_by=order_by,
            limit=self.max_record_count(),
            only=self._only,
        )
        import adbc_driver_postgresql.dbapi as adbc

        # The read's own path (ADBC, no bind-parameter parsing): any identifier or literal is safe.
        with adbc.connect(adbc_uri(self._tap.connection_parameters)) as conn, conn.cursor() as cur:  # type: ignore[attr-defined]
            cur.execute(sql)
            found = cur.fetchone()
        return [(c.plan.column.name, c.plan.pg_type, c.problem) for c, hit in zip(checks, found, strict=True) if hit]

    def pg_columns(self) -> list[PgColumn]:
        """The table's columns from pg_catalog, in attnum order (domains resolved); also notes
        whether other tables inherit from it (one connection for both)."""
        entry = self._singer_catalog_entry
        names = {"schema": entry.metadata.root.schema_name, "table": entry.table}
        with self.connector._connect() as conn:
            rows = conn.execute(sa.text(CATALOG_SQL), names).mappings().all()
            # An ordinary table others inherit from (INHERITS, not a partitioned table): a plain
            # SELECT would return their rows too, and they are extracted as tables of their own.
            self._only = bool(conn.execute(sa.text(INHERITED_SQL), names).scalar())
        return [PgColumn.from_row(row) for row in rows]

    def build_arrow_query(self, context: Context | None) -> tuple[str, list, int | None]:
        """(SQL, column plans, index of the replication key among the plans or None)."""
        entry = self._singer_catalog_entry
        columns = self.pg_columns()
        if not columns:
            msg = "table not found or has no columns"
            raise RuntimeError(msg)
        selected = set(self.get_selected_schema()["properties"])
        plans = [plan_column(c) for c in columns if c.name in selected]
        where: list[str] = []
        order_by, rk_index = None, None
        if self.replication_method == REPLICATION_INCREMENTAL and self.replication_key:
            rk = self.replication_key
            rk_index = next(i for i, p in enumerate(plans) if p.column.name == rk)
            # Table-qualified: a bare name in ORDER BY would sort by the output column (maybe its ::text).
            table_ident = f"{quote_ident(entry.metadata.root.schema_name)}.{quote_ident(entry.table)}"
            rk_sql = f"{table_ident}.{quote_ident(rk)}"
            order_by = f"{rk_sql} ASC NULLS FIRST"
            self._write_starting_replication_value(context)
            start = self.get_starting_replication_key_value(context)
            if start is not None:
                literal = quote_literal(start if isinstance(start, str) else str(start))
                where.append(f"{rk_sql} >= CAST({literal} AS {plans[rk_index].column.format_type})")
        stream_options = self.config.get("stream_options", {}).get(self.name, {})
        where += [c.strip() for c in stream_options.get("custom_where_clauses") or []]
        self._query = (plans, where, order_by)
        sql = build_select(
            entry.metadata.root.schema_name,
            entry.table,
            plans,
            where=where,
            order_by=order_by,
            limit=self.max_record_count(),
            only=self._only,
        )
        return sql, plans, rk_index

    def _query_parts(self) -> tuple[list[ColumnPlan], list[str], str | None]:
        """The plans, WHERE conditions and ORDER BY of the last query built."""
        assert self._query is not None, "build_arrow_query runs first"
        return self._query

    def arrow_batches(
        self,
        batch_config: BatchConfig,
        context: Context | None,
        stop: threading.Event | None = None,
    ) -> Iterator[tuple[BaseBatchFileEncoding, list[str]]]:
        """Read the table into Parquet files; one (encoding, [file URI]) per file. `stop`: set when
        the run no longer wants the files (a table read ahead): the read ends with ReadStopped."""
        import adbc_driver_postgresql as adbc_postgresql
        import adbc_driver_postgresql.dbapi as adbc

        from tap_postgres_arrow.arrow import BatchConverter

        sql, plans, rk_index = self.build_arrow_query(context)
        file_rows = self.file_rows
        out_dir = _local_dir(batch_config.storage.root)
        out_dir.mkdir(parents=True, exist_ok=True)
        stem = f"{batch_stem(batch_config.storage.prefix or '', self.name)}-{uuid.uuid4().hex}"
        encoding = BaseBatchFileEncoding(format="parquet", compression="none")
        self.logger.info("Reading %s with ADBC: %s", self.table_label, sql)

        sessions: AdbcSessions | None = getattr(self._tap, "adbc_sessions", None)
        connection = (
            sessions.session() if sessions is not None else adbc.connect(adbc_uri(self._tap.connection_parameters))  # type: ignore[attr-defined]
        )
        with connection as conn, conn.cursor() as cur:
            for name, value in SESSION_SETTINGS.items():
                cur.execute(f"SET {name} = {quote_literal(value)}")
            # Smaller result batches than the driver's 16 MB: memory stays flat as tables grow.
            cur.adbc_statement.set_options(
                **{adbc_postgresql.StatementOptions.BATCH_SIZE_HINT_BYTES.value: str(BATCH_BYTES)}
            )
            cur.execute(sql)
            reader = cur.fetch_record_batch()
            converter = BatchConverter(plans, reader.schema, self.table_label)
            files = _FileRotation(out_dir, stem, converter.schema, self.parquet_compression)
            try:
                for batch in reader:
                    if stop is not None and stop.is_set():
                        raise ReadStopped(self.table_label)
                    out = converter.convert(batch)
                    offset = 0
                    while offset < out.num_rows:
                        take = min(file_rows - files.rows, out.num_rows - offset)
                        piece = out.slice(offset, take)
                        files.write(piece)
                        offset += take
                        if rk_index is not None:
                            files.note_last(piece.column(rk_index))
                        if files.rows >= file_rows:
                            yield encoding, [self._finish(files, rk_index, context)]
                if files.writer is not None or files.count == 0:  # rest, or the empty table's one file
                    yield encoding, [self._finish(files, rk_index, context)]
            finally:
                files.abort()
            conn.rollback()  # the read's transaction ends here, also on a connection kept for another table

    def _finish(self, files: _FileRotation, rk_index: int | None, context: Context | None) -> str:
        from tap_postgres_arrow.arrow import json_compatible

        rows, path, last = files.close()
        self.logger.info("Wrote %d rows of %s to %s", rows, self.table_label, path)
        if rk_index is not None and last is not None:
            self._increment_stream_state({self.replication_key: json_compatible(last)}, context=context)
        return path.as_uri()


class _FileRotation:
    """The Parquet file being written; a new one is opened on the first write after a close."""

    def __init__(self, out_dir: Path, stem: str, schema: pa.Schema, compression: str) -> None:
        self.out_dir, self.stem, self.schema, self.compression = out_dir, stem, schema, compression
        self.writer: pq.ParquetWriter | None = None
        self.path: Path | None = None
        self.rows = 0
        self.count = 0
        self.last: pa.Scalar | None = None

    def _open(self) -> None:
        import pyarrow.parquet as pq

        self.path = self.out_dir / f"{self.stem}-{self.count:05d}.parquet"
        self.writer = pq.ParquetWriter(self.path, self.schema, compression=self.compression)
        self.rows, self.last = 0, None

    def write(self, batch: pa.RecordBatch) -> None:
        if self.writer is None:
            self._open()
        self.writer.write_batch(batch)  # type: ignore[union-attr]
        self.rows += batch.num_rows

    def note_last(self, column: pa.Array) -> None:
        """Rows come ORDER BY the key NULLS FIRST: the last non-null value is the file's max."""
        if len(column) and column[len(column) - 1].is_valid:
            self.last = column[len(column) - 1]

    def close(self) -> tuple[int, Path, pa.Scalar | None]:
        if self.writer is None:
            self._open()
        self.writer.close()  # type: ignore[union-attr]
        result = (self.rows, self.path, self.last)
        self.writer, self.count = None, self.count + 1
        return result  # type: ignore[return-value]

    def abort(self) -> None:
        """Close and delete a file left half-written by an error."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
            if self.path is not None:
                self.path.unlink(missing_ok=True)
