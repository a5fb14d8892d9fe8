"""Northwind's outputs: the day's orders_with_details as CSV and JSON, rendered by Postgres itself."""

from __future__ import annotations

import psycopg
from psycopg import sql

from northwind_elt.core import settings
from northwind_elt.core.day import DayLayout
from northwind_elt.core.errors import PipelineError
from northwind_elt.core.files import atomic_write_bytes
from northwind_elt.protocol.definition import Pipeline
from northwind_elt.protocol.outputs import copy_csv

MART_SCHEMA = "analytics"
MART = "orders_with_details"
ORDER = ("order_id", "product_id")


def export_day(pipeline: Pipeline, step: str, layout: DayLayout, target: settings.PgConn) -> int:
    with psycopg.connect(target.conninfo()) as conn:
        # One snapshot for both files, even if dbt rebuilds the mart meanwhile.
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        columns = [
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s"
                " AND column_name <> '_day' ORDER BY ordinal_position",
                [MART_SCHEMA, MART],
            ).fetchall()
        ]
        if not columns:
            raise PipelineError(step, layout.day, f"{MART_SCHEMA}.{MART} does not exist", rerun_from="transform")
        query = sql.SQL("SELECT {} FROM {} WHERE _day = {} ORDER BY {}").format(
            sql.SQL(", ").join(map(sql.Identifier, columns)),
            sql.Identifier(MART_SCHEMA, MART),
            sql.Literal(layout.day),
            sql.SQL(", ").join(map(sql.Identifier, ORDER)),
        )
        rows, json_text = conn.execute(
            sql.SQL("SELECT count(*), string_agg(row_to_json(q)::text, E',\\n' ORDER BY {}) FROM ({}) q").format(
                sql.SQL(", ").join(sql.Identifier("q", c) for c in ORDER), query
            )
        ).fetchone()
        if rows == 0:
            raise PipelineError(
                step, layout.day, f"{MART_SCHEMA}.{MART} has no rows for that day", rerun_from="transform"
            )
        csv_bytes = copy_csv(conn, query)
    atomic_write_bytes(layout.output_file(f"{MART}.csv"), csv_bytes)
    atomic_write_bytes(layout.output_file(f"{MART}.json"), f"[\n{json_text}\n]\n".encode())
    return rows
