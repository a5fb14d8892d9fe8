"""Swap a loaded day into `raw` in one transaction, and clear what a failed load left.

target-postgres appends the day's rows, tagged with `_day` and `_load_id`, to tables in
the `raw_staging` schema. The commit checks that every table received exactly the rows
the tap announced, then, in one transaction, replaces day D in every `raw` table (tables
not in this load lose their D rows: the day is exactly this load) and clears D from
staging. Readers see the old day or the new one, never a mix.
"""

from __future__ import annotations

import datetime as dt
import json

import psycopg
from psycopg import sql

from northwind_elt import settings
from northwind_elt.errors import PipelineError

STAGING_SCHEMA = "raw_staging"
RAW_SCHEMA = "raw"


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


def clear_staged_day(step: str, day: dt.date) -> int:
    """Remove rows a failed attempt left in raw_staging for the day; returns rows removed."""
    removed = 0
    with psycopg.connect(settings.analytics_pg().conninfo()) as conn:
        _lock_day(conn, day)
        for table in _day_tables(conn, STAGING_SCHEMA):
            cur = conn.execute(
                sql.SQL("DELETE FROM {} WHERE _day = %s").format(sql.Identifier(STAGING_SCHEMA, table)), [day]
            )
            removed += cur.rowcount
    return removed


def swap_day(step: str, day: dt.date, intent: dict) -> int:
    load_id = intent["load_id"]
    with psycopg.connect(settings.analytics_pg().conninfo()) as conn:
        _lock_day(conn, day)
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(RAW_SCHEMA)))
        for table, expected in sorted(intent["tables"].items()):
            staged_cols = _columns(conn, STAGING_SCHEMA, table)
            if not staged_cols:
                raise PipelineError(
                    step, day, f"table {STAGING_SCHEMA}.{table} is missing; target-postgres did not load it"
                )
            staged = sql.Identifier(STAGING_SCHEMA, table)
            raw = sql.Identifier(RAW_SCHEMA, table)
            got = conn.execute(
                sql.SQL("SELECT count(*) FROM {} WHERE _load_id = %s").format(staged), [load_id]
            ).fetchone()[0]
            if got != expected:
                raise PipelineError(step, day, f"{STAGING_SCHEMA}.{table} received {got} rows, expected {expected}")
            conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (LIKE {})").format(raw, staged))
            raw_cols = set(_columns(conn, RAW_SCHEMA, table))
            for column in staged_cols:
                if column not in raw_cols:  # a column added at the source flows through
                    col_type = conn.execute(
                        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
                        " WHERE attrelid = %s::regclass AND attname = %s",
                        [str(staged.as_string(conn)), column],
                    ).fetchone()[0]
                    conn.execute(
                        sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
                            raw, sql.Identifier(column), sql.SQL(col_type)
                        )
                    )
            cols = sql.SQL(", ").join(map(sql.Identifier, staged_cols))
            conn.execute(sql.SQL("DELETE FROM {} WHERE _day = %s").format(raw), [day])
            conn.execute(
                sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} WHERE _load_id = %s").format(raw, cols, cols, staged),
                [load_id],
            )
            conn.execute(sql.SQL("DELETE FROM {} WHERE _day = %s").format(staged), [day])
        # The day is exactly this load: a table an earlier load of D had, and this one has
        # not, loses its D rows in the same transaction.
        for table in _day_tables(conn, RAW_SCHEMA):
            if table not in intent["tables"] and not table.startswith("_"):
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
    return sum(intent["tables"].values())
