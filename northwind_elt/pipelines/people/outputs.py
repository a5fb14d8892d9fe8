"""The people/places pipeline's export: the summary and every dbt model tagged `export`.

`data/summary_output.json` is people per country of birth, shaped exactly like the
data team's sample: one compact JSON object, country -> count, UTF-8 not escaped,
ordered by count descending then name, no trailing newline. It is written atomically,
with a dated copy beside the day's other outputs. Every model tagged `export` (in
transform/models/people/exports/) is written for the day as JSON and CSV, so a new
subset of the data is one more model file.
"""

from __future__ import annotations

import json

import psycopg
from psycopg import sql

from northwind_elt.core import settings
from northwind_elt.core.day import DayLayout
from northwind_elt.core.errors import PipelineError
from northwind_elt.core.files import atomic_write_bytes, read_json
from northwind_elt.protocol.definition import Pipeline
from northwind_elt.protocol.outputs import copy_csv

SUMMARY_MODEL = "summary_output"
EXPORT_TAG = "export"
SCHEMA = "analytics"


def exported_models(target_path: str) -> list[str]:
    """The models tagged `export` in the people project, from dbt's manifest."""
    from northwind_elt.protocol.dbt import target_dir

    manifest = target_dir(target_path) / "manifest.json"
    if not manifest.exists():
        raise FileNotFoundError(manifest)
    nodes = read_json(manifest)["nodes"].values()
    return sorted(
        node["name"]
        for node in nodes
        if node["resource_type"] == "model" and EXPORT_TAG in node.get("tags", []) and "people" in node.get("tags", [])
    )


def _day_rows(conn: psycopg.Connection, step: str, layout: DayLayout, model: str) -> sql.Composed:
    """The model's rows of the day, without _day, in a stable order (every column)."""
    columns = [
        r[0]
        for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s"
            " AND column_name <> '_day' ORDER BY ordinal_position",
            [SCHEMA, model],
        ).fetchall()
    ]
    if not columns:
        raise PipelineError(step, layout.day, f"{SCHEMA}.{model} does not exist", rerun_from="people-transform")
    names = sql.SQL(", ").join(map(sql.Identifier, columns))
    return sql.SQL("SELECT {} FROM {} WHERE _day = {} ORDER BY {}").format(
        names, sql.Identifier(SCHEMA, model), sql.Literal(layout.day), names
    )


def summary_json(rows: list[tuple[str, int]]) -> bytes:
    """{"Scotland":8048,"Northern Ireland":1952}: the sample's exact shape."""
    return json.dumps(dict(rows), ensure_ascii=False, separators=(",", ":")).encode()


def export_day(pipeline: Pipeline, step: str, layout: DayLayout, conn_info: settings.PgConn) -> int:
    out_dir = layout.output_dir() / "people"
    models = exported_models(pipeline.dbt_target_path)
    if SUMMARY_MODEL not in models:
        raise PipelineError(step, layout.day, f"no dbt model {SUMMARY_MODEL} tagged {EXPORT_TAG}", rerun_from=step)
    with psycopg.connect(conn_info.conninfo()) as conn:
        # One snapshot for every file of the day.
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        files: dict[str, bytes] = {}
        for model in models:
            query = _day_rows(conn, step, layout, model)
            rows = conn.execute(sql.SQL("SELECT coalesce(json_agg(q), '[]')::text FROM ({}) q").format(query))
            files[f"{model}.json"] = (rows.fetchone()[0] + "\n").encode()
            files[f"{model}.csv"] = copy_csv(conn, query)
        summary = conn.execute(
            sql.SQL("SELECT country, people FROM {} WHERE _day = %s ORDER BY people DESC, country").format(
                sql.Identifier(SCHEMA, SUMMARY_MODEL)
            ),
            [layout.day],
        ).fetchall()
    if not summary:
        raise PipelineError(step, layout.day, f"{SCHEMA}.{SUMMARY_MODEL} has no rows", rerun_from="people-transform")
    for name, data in files.items():
        atomic_write_bytes(out_dir / name, data)
    body = summary_json(summary)
    atomic_write_bytes(out_dir / "summary_output.json", body)
    # The team's fixed location holds the newest day's summary: a backfill of an older
    # day writes its dated copy only.
    exported_days = [p.parent.parent.name for p in (layout.data_dir / "output").glob("*/people/summary_output.json")]
    if layout.iso >= max(exported_days, default=layout.iso):
        atomic_write_bytes(layout.data_dir / "summary_output.json", body)
    return sum(count for _, count in summary)
