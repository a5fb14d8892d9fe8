"""Swap a loaded day into `raw` in one transaction, and clear what a failed load left.

target-postgres-arrow ingests the day's rows, tagged with `_day` and `_load_id`, into the
day's own staging schema `raw_staging_<day>` (emptied by begin). The commit checks that
every table received exactly the rows the tap announced, then, in one transaction,
replaces day D in every `raw` table with them, each column cast to the type its
partition file records (the source's own Postgres type), removes D from raw tables this
load lacks (the day is exactly this load), and drops the staging schema. Readers see the
old day or the new one, never a mix. Rows are written once to staging and once to raw.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
from psycopg import sql

from northwind_elt import settings
from northwind_elt.errors import PipelineError

RAW_SCHEMA = "raw"
# The Postgres type of a column, as format_type() prints it: checked before it is
# spliced into SQL, since it is read from a file.
_PG_TYPE = re.compile(r'"?[A-Za-z_][A-Za-z0-9_ ]*"?(\(\d+(,\s*-?\d+)?\))?( with(out)? time zone)?(\[\])*')


def staging_schema(day: dt.date) -> str:
    """The day's own staging schema: target-postgres-arrow ingests there, commit drops it."""
    return f"raw_staging_{day.isoformat()}"


def _columns(conn: psycopg.Connection, schema: str, table: str) -> list[str]:
    rows = conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s"
        " ORDER BY ordinal_position",
        [schema, table],
    ).fetchall()
    return [r[0] for r in rows]


def _day_tables(conn: psycopg.Connection, schema: str) -> list[str]:
    """Tables of `schema` that hold days (have a _day column)."""
    rows = conn.execute(
        "SELECT table_name FROM information_schema.columns WHERE table_schema = %s AND column_name = '_day'"
        " ORDER BY table_name",
        [schema],
    ).fetchall()
    return [r[0] for r in rows]


def _lock_day(conn: psycopg.Connection, day: dt.date) -> None:
    # One load of a day at a time; other days proceed in parallel.
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('northwind-load'), %s)", [day.toordinal()])


def arrow_to_pg(kind: pa.DataType) -> str:
    """The Postgres type for an Arrow type, for columns whose file does not say (e.g. from a CSV)."""
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return arrow_to_pg(kind.value_type) + "[]"
    if pa.types.is_decimal(kind):
        return f"numeric({kind.precision},{kind.scale})"
    if pa.types.is_timestamp(kind):
        return "timestamp with time zone" if kind.tz else "timestamp without time zone"
    for test, name in (
        (pa.types.is_int8, "smallint"),
        (pa.types.is_int16, "smallint"),
        (pa.types.is_int32, "integer"),
        (pa.types.is_int64, "bigint"),
        (pa.types.is_float32, "real"),
        (pa.types.is_float64, "double precision"),
        (pa.types.is_boolean, "boolean"),
        (pa.types.is_date32, "date"),
        (pa.types.is_time64, "time without time zone"),
        (pa.types.is_binary, "bytea"),
        (pa.types.is_large_binary, "bytea"),
        (pa.types.is_string, "text"),
        (pa.types.is_large_string, "text"),
    ):
        if test(kind):
            return name
    raise ValueError(f"no Postgres type for Arrow type {kind}")


def column_types(path: Path, step: str, day: dt.date, table: str) -> dict[str, str]:
    """Each column of a partition file with the Postgres type it is loaded as."""
    types = {}
    for field in pq.read_schema(path):
        declared = (field.metadata or {}).get(b"pg_type")
        pg_type = declared.decode() if declared else arrow_to_pg(field.type)
        if not _PG_TYPE.fullmatch(pg_type):
            raise PipelineError(step, day, f"{path}: column {field.name!r} declares an unusable type {pg_type!r}")
        types[field.name] = pg_type
    return types | {"_day": "date", "_load_id": "text"}


def prepare_staging(target: settings.PgConn, step: str, day: dt.date) -> None:
    """An empty staging schema for the day: whatever a failed attempt left is gone."""
    schema = sql.Identifier(staging_schema(day))
    with psycopg.connect(target.conninfo()) as conn:
        _lock_day(conn, day)
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(schema))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(schema))


def swap_day(target: settings.PgConn, step: str, day: dt.date, intent: dict) -> int:
    """Replace day D in raw with this load, every table in one transaction, then drop staging."""
    load_id = intent["load_id"]
    files = {stream["name"]: Path(stream["files"][0]["path"]) for stream in intent["streams"]}
    staging_name = staging_schema(day)
    with psycopg.connect(target.conninfo()) as conn:
        _lock_day(conn, day)
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(RAW_SCHEMA)))
        for table, expected in sorted(intent["tables"].items()):
            staged = sql.Identifier(staging_name, table)
            raw = sql.Identifier(RAW_SCHEMA, table)
            staged_cols = _columns(conn, staging_name, table)
            if not staged_cols:
                raise PipelineError(step, day, f"table {staging_name}.{table} is missing; the target did not load it")
            got = conn.execute(
                sql.SQL("SELECT count(*) FROM {} WHERE _load_id = %s").format(staged), [load_id]
            ).fetchone()[0]
            if got != expected:
                raise PipelineError(step, day, f"{staging_name}.{table} received {got} rows, expected {expected}")
            types = column_types(files[table], step, day, table)
            columns = [c for c in types if c in staged_cols]
            conn.execute(
                sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(
                    raw,
                    sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(types[c])) for c in columns),
                )
            )
            raw_cols = set(_columns(conn, RAW_SCHEMA, table))
            for column in columns:
                if column not in raw_cols:  # a column added at the source flows through
                    conn.execute(
                        sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
                            raw, sql.Identifier(column), sql.SQL(types[column])
                        )
                    )
            conn.execute(sql.SQL("DELETE FROM {} WHERE _day = %s").format(raw), [day])
            conn.execute(
                sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} WHERE _load_id = %s").format(
                    raw,
                    sql.SQL(", ").join(map(sql.Identifier, columns)),
                    sql.SQL(", ").join(sql.SQL("{}::{}").format(sql.Identifier(c), sql.SQL(types[c])) for c in columns),
                    staged,
                ),
                [load_id],
            )
        # The day is exactly this load: a table an earlier load of D had, and this one has
        # not, loses its D rows in the same transaction.
        for table in _day_tables(conn, RAW_SCHEMA):
            if table not in intent["tables"]:
                conn.execute(sql.SQL("DELETE FROM {} WHERE _day = %s").format(sql.Identifier(RAW_SCHEMA, table)), [day])
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {}._loaded_days (day date PRIMARY KEY, load_id text NOT NULL,"
                " loaded_at timestamptz NOT NULL, tables jsonb NOT NULL)"
            ).format(sql.Identifier(RAW_SCHEMA))
        )
        conn.execute(
            sql.SQL(
                "INSERT INTO {}._loaded_days VALUES (%s, %s, now(), %s) ON CONFLICT (day) DO UPDATE"
                " SET load_id = excluded.load_id, loaded_at = excluded.loaded_at, tables = excluded.tables"
            ).format(sql.Identifier(RAW_SCHEMA)),
            [day, load_id, json.dumps(intent["tables"])],
        )
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(staging_name)))
    return sum(intent["tables"].values())
