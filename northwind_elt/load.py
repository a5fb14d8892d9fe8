"""Publish a loaded day: swap the staged rows of day D into `raw` in one transaction.

target-postgres appends the day's rows, tagged with `_day` and `_load_id`, to tables in
the `raw_staging` schema. This step checks that every table received exactly the rows
the tap announced, then replaces D's rows in `raw` and clears D from staging, all in
one transaction: readers see the old day or the new one, never a mix.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil

import psycopg
from psycopg import sql

from northwind_elt import ledger, settings
from northwind_elt.day import LOAD_STEP, DayLayout, rerun_command
from northwind_elt.files import read_json

STAGING_SCHEMA = "raw_staging"
RAW_SCHEMA = "raw"


class LoadError(RuntimeError):
    pass


def _columns(conn: psycopg.Connection, schema: str, table: str) -> list[str]:
    rows = conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s"
        " ORDER BY ordinal_position",
        [schema, table],
    ).fetchall()
    return [r[0] for r in rows]


def publish_load(layout: DayLayout) -> int:
    intent_path = layout.load_intent()
    if not intent_path.exists():
        raise LoadError(
            f"load for {layout.iso}: no load intent ({intent_path}); rerun: {rerun_command('load', layout.day)}"
        )
    intent = read_json(intent_path)
    load_id, day = intent["load_id"], layout.day
    with psycopg.connect(settings.analytics_pg().conninfo()) as conn:
        # One publish per day at a time; other days proceed in parallel.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('northwind-load'), %s)", [day.toordinal()])
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(RAW_SCHEMA)))
        for table, expected in sorted(intent["tables"].items()):
            staged_cols = _columns(conn, STAGING_SCHEMA, table)
            if not staged_cols:
                raise LoadError(
                    f"load for {day}: table {STAGING_SCHEMA}.{table} is missing; target-postgres did not load it"
                )
            staged = sql.Identifier(STAGING_SCHEMA, table)
            raw = sql.Identifier(RAW_SCHEMA, table)
            got = conn.execute(
                sql.SQL("SELECT count(*) FROM {} WHERE _load_id = %s").format(staged), [load_id]
            ).fetchone()[0]
            if got != expected:
                raise LoadError(f"load for {day}: {STAGING_SCHEMA}.{table} received {got} rows, expected {expected}")
            conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (LIKE {})").format(raw, staged))
            raw_cols = set(_columns(conn, RAW_SCHEMA, table))
            for column in staged_cols:
                if column not in raw_cols:  # a column added at the source flows through
                    col_type = conn.execute(
                        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
                        " WHERE attrelid = %s::regclass AND attname = %s",
                        [f"{STAGING_SCHEMA}.{table}", column],
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
    shutil.rmtree(layout.staging_dir(LOAD_STEP), ignore_errors=True)
    total = sum(intent["tables"].values())
    ledger.record(day, LOAD_STEP, "success", started_at=dt.datetime.fromisoformat(intent["started_at"]), rows=total)
    return total
