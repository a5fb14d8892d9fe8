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

from northwind_elt import settings
from northwind_elt.day import DayLayout
from northwind_elt.errors import PipelineError
from northwind_elt.files import atomic_write_bytes, read_json

SUMMARY_MODEL = "summary_output"
EXPORT_TAG = "export"
SCHEMA = "analytics"


def exported_models(target_path: str) -> list[str]:
    """The models tagged `export` in the people project, from dbt's manifest."""
    manifest = settings.project_root() / "transform" / target_path / "manifest.json"
    if not manifest.exists():
        raise FileNotFoundError(manifest)
    nodes = read_json(manifest)["nodes"].values()
    return sorted(
        node["name"]
        for node in nodes
        if node["resource_type"] == "model" and EXPORT_TAG in node.get("tags", []) and "people" in node.get("tags", [])
    )


def summary_json(rows: list[tuple[str, int]]) -> bytes:
    """{"Scotland":8048,"Northern Ireland":1952}: the sample's exact shape."""
    return json.dumps(dict(rows), ensure_ascii=False, separators=(",", ":")).encode()


def export_day(step: str, layout: DayLayout, conn_info: settings.PgConn, target_path: str) -> int:
    out_dir = layout.output_dir() / "people"
    models = exported_models(target_path)
    if SUMMARY_MODEL not in models:
        raise PipelineError(step, layout.day, f"no dbt model {SUMMARY_MODEL} tagged {EXPORT_TAG}", rerun_from=step)
    with psycopg.connect(conn_info.conninfo()) as conn:
        # One snapshot for every file of the day.
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        files: dict[str, bytes] = {}
        for model in models:
            relation = sql.Identifier(SCHEMA, model)
            if conn.execute("SELECT to_regclass(%s)", [f"{SCHEMA}.{model}"]).fetchone()[0] is None:
                raise PipelineError(step, layout.day, f"{SCHEMA}.{model} does not exist", rerun_from="people-transform")
            rows = conn.execute(
                sql.SQL("SELECT coalesce(json_agg(q), '[]')::text FROM (SELECT * FROM {}) q").format(relation)
            ).fetchone()[0]
            files[f"{model}.json"] = (rows + "\n").encode()
            csv_bytes = bytearray()
            with conn.cursor().copy(
                sql.SQL("COPY (SELECT * FROM {}) TO STDOUT WITH (FORMAT csv, HEADER)").format(relation)
            ) as copy:
                for block in copy:
                    csv_bytes += block
            files[f"{model}.csv"] = bytes(csv_bytes)
        summary = conn.execute(
            sql.SQL("SELECT country, people FROM {} ORDER BY people DESC, country").format(
                sql.Identifier(SCHEMA, SUMMARY_MODEL)
            )
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
