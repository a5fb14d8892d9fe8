"""End-to-end runs of the real pipeline: real Meltano, real Postgres, real files."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import pyarrow.parquet as pq
import pytest
from support import NORTHWIND_DAY, SOURCE_CSV, Pipeline, partition_file, read_csv_rows

from expected import expected_mart, same_value
from northwind_elt.pipelines.northwind.pipeline import NORTHWIND

DAY = NORTHWIND_DAY
NEWER_DAY = "2024-01-16"


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def source_table_counts(pipeline: Pipeline) -> dict[str, int]:
    with pipeline.source() as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
            )
        ]
        return {t: conn.execute(f'SELECT count(*) FROM public."{t}"').fetchone()[0] for t in tables}


@pytest.fixture(scope="module")
def first_day(northwind_day: Pipeline) -> Pipeline:
    """The session's Northwind day (tests/conftest.py), DAY."""
    return northwind_day


def test_end_to_end_day_exports_every_csv_line_with_source_values(first_day: Pipeline) -> None:
    csv_lines = read_csv_rows(SOURCE_CSV)
    exported = read_csv_rows(first_day.output(DAY, "csv"))
    assert len(csv_lines) == 2155
    assert len(exported) == len(csv_lines)
    with first_day.source() as conn:
        expected = expected_mart(conn)
    mismatches = []
    for row in exported:
        want = expected[(row["order_id"], row["product_id"])]
        for column, value in want.items():
            if not same_value(row[column], value):
                mismatches.append((row["order_id"], row["product_id"], column, row[column], value))
    assert mismatches == []
    keys = [(int(r["order_id"]), int(r["product_id"])) for r in exported]
    assert keys == sorted(keys), "export must be ordered by order_id, product_id"


def test_json_export_matches_csv_export(first_day: Pipeline) -> None:
    records = json.loads(first_day.output(DAY, "json").read_text())
    exported = read_csv_rows(first_day.output(DAY, "csv"))
    assert len(records) == len(exported) == 2155
    for record, row in zip(records, exported, strict=True):
        for column, value in record.items():
            assert same_value(row[column], None if value is None else str(value)), (column, value, row[column])


def test_every_source_table_and_the_csv_are_loaded_for_the_day(first_day: Pipeline) -> None:
    expected = source_table_counts(first_day) | {"order_details": 2155}
    assert len(expected) == 14
    with first_day.analytics() as conn:
        for table, rows in expected.items():
            got = conn.execute(f'SELECT count(*) FROM raw."{table}" WHERE _day = %s', [DAY]).fetchone()[0]
            assert got == rows, table
    for table in expected:
        dataset = "csv" if table == "order_details" else "postgres"
        published = partition_file(first_day.data_dir, dataset, table, DAY)
        assert published.exists(), table
        folder = published.parent
        # One file per table and day: the commit removed what earlier attempts published.
        assert [p.name for p in folder.glob(f"{table}.*parquet")] == [published.name], table
        assert not list(folder.glob(".*tmp")), "no temporary files may remain"


@dataclass
class Rerun:
    """DAY's exports and source counts before its rerun, and NEWER_DAY as it was before DAY was rerun
    (with what `nw run` printed for it)."""

    csv_before: str
    json_before: str
    counts: dict[str, int]
    newer_csv: str
    newer_load: tuple
    newer_rows: tuple
    newer_mart: tuple
    newer_output: str


@pytest.fixture(scope="module")
def rerun(first_day: Pipeline) -> Rerun:
    """NEWER_DAY runs, then DAY again: that rerun of DAY is also the backfill of an older day (one
    Northwind day fewer than a rerun and a backfill of their own)."""
    csv_before, json_before = sha256(first_day.output(DAY, "csv")), sha256(first_day.output(DAY, "json"))
    counts = source_table_counts(first_day)
    newer_output = first_day.run_ok("daily", NEWER_DAY).stdout
    newer_csv = sha256(first_day.output(NEWER_DAY, "csv"))
    with first_day.analytics() as conn:
        newer_load = conn.execute("SELECT load_id FROM raw._loaded_days WHERE day = %s", [NEWER_DAY]).fetchone()
        newer_rows = conn.execute("SELECT count(*) FROM raw.orders WHERE _day = %s", [NEWER_DAY]).fetchone()
        newer_mart = conn.execute(
            "SELECT count(*), sum(line_total) FROM analytics.orders_with_details WHERE _day = %s", [NEWER_DAY]
        ).fetchone()
    first_day.run_ok("daily", DAY)  # reprocess the older day
    return Rerun(csv_before, json_before, counts, newer_csv, newer_load, newer_rows, newer_mart, newer_output)


def test_a_past_day_prints_the_snapshot_note_then_each_step_once(rerun: Rerun) -> None:
    """`nw run daily` in a pipe (issue 27): one note that a past day reads the source as it is now,
    then one line per step (the two extracts ran side by side), with the rows each step recorded."""
    lines = rerun.newer_output.splitlines()
    notes = [line for line in lines if line.startswith("note: ")]
    assert notes == [
        f"note: {NEWER_DAY} is a past day: northwind reads the source Postgres and order_details.csv as it is now"
        " (a snapshot, not a history); the day only names the partitions"
    ], rerun.newer_output
    steps = [line.split() for line in lines if line.startswith("northwind ")]
    assert sorted(words[1] for words in steps) == sorted(NORTHWIND.step_names), rerun.newer_output
    assert all(words[2] == NEWER_DAY and words[-1] == "success" for words in steps), rerun.newer_output
    rows = {words[1]: words[3] for words in steps}
    assert rows["extract-csv"] == "2,155" and rows["load"] != "" and rows["export"] == "2,155", rerun.newer_output
    assert lines.index(notes[0]) < min(lines.index(line) for line in lines if line.startswith("northwind "))
    # What the periodic lines say while steps run is about running steps only, never a step's line again.
    assert all(line.startswith("  ... ") for line in lines if "running" in line), rerun.newer_output


def test_rerun_gives_identical_tables_and_byte_identical_export(first_day: Pipeline, rerun: Rerun) -> None:
    assert sha256(first_day.output(DAY, "csv")) == rerun.csv_before
    assert sha256(first_day.output(DAY, "json")) == rerun.json_before
    with first_day.analytics() as conn:
        for table, rows in rerun.counts.items():
            got = conn.execute(f'SELECT count(*) FROM raw."{table}" WHERE _day = %s', [DAY]).fetchone()[0]
            assert got == rows, f"{table}: rerun must replace the day, not append to it"
        mart = conn.execute("SELECT count(*) FROM analytics.orders_with_details WHERE _day = %s", [DAY]).fetchone()[0]
        assert mart == 2155


def test_backfill_of_an_older_day_leaves_the_newer_day_untouched(first_day: Pipeline, rerun: Rerun) -> None:
    assert sha256(first_day.output(NEWER_DAY, "csv")) == rerun.newer_csv
    with first_day.analytics() as conn:
        loaded = conn.execute("SELECT load_id FROM raw._loaded_days WHERE day = %s", [NEWER_DAY]).fetchone()
        assert loaded == rerun.newer_load
        assert (
            conn.execute("SELECT count(*) FROM raw.orders WHERE _day = %s", [NEWER_DAY]).fetchone() == rerun.newer_rows
        )
        assert (
            conn.execute(
                "SELECT count(*), sum(line_total) FROM analytics.orders_with_details WHERE _day = %s", [NEWER_DAY]
            ).fetchone()
            == rerun.newer_mart
        )
        days = [r[0].isoformat() for r in conn.execute("SELECT day FROM raw._loaded_days ORDER BY day")]
    assert DAY in days and NEWER_DAY in days


def test_types_survive_files_analytics_and_export(first_day: Pipeline) -> None:
    orders = pq.read_schema(partition_file(first_day.data_dir, "postgres", "orders", DAY))
    assert str(orders.field("order_date").type) == "date32[day]"
    assert str(orders.field("freight").type) == "float"  # real stays single precision
    categories = pq.read_table(partition_file(first_day.data_dir, "postgres", "categories", DAY))
    assert str(categories.schema.field("picture").type) == "binary"
    details = pq.read_schema(partition_file(first_day.data_dir, "csv", "order_details", DAY))
    assert {f.name: str(f.type) for f in details} == {
        "order_id": "int64",
        "product_id": "int64",
        "unit_price": "double",
        "quantity": "int64",
        "discount": "double",
    }
    with first_day.source() as src, first_day.analytics() as dst:
        for table, column, key in (("categories", "picture", "category_id"), ("employees", "photo", "employee_id")):
            want = src.execute(f"SELECT {key}, md5({column}), length({column}) FROM {table} ORDER BY 1").fetchall()
            got = dst.execute(
                f"SELECT {key}::int, md5({column}), length({column}) FROM raw.{table} WHERE _day = %s ORDER BY 1", [DAY]
            ).fetchall()
            assert got == want, f"{table}.{column} must arrive byte-identical"
            assert dst.execute(
                "SELECT data_type FROM information_schema.columns WHERE table_schema = 'raw' AND table_name = %s"
                " AND column_name = %s",
                [table, column],
            ).fetchone() == ("bytea",)
        want_dates = src.execute("SELECT order_id, order_date, shipped_date FROM orders ORDER BY 1").fetchall()
        got_dates = dst.execute(
            "SELECT order_id::int, order_date, shipped_date FROM raw.orders WHERE _day = %s ORDER BY 1", [DAY]
        ).fetchall()
        assert got_dates == want_dates
        want_codes = src.execute("SELECT customer_id::text FROM customers ORDER BY 1").fetchall()
        got_codes = dst.execute("SELECT customer_id FROM raw.customers WHERE _day = %s ORDER BY 1", [DAY]).fetchall()
        assert got_codes == want_codes, "bpchar codes must come through unpadded and unchanged"
    # A real 9.8 in the source must print as 9.8, not 9.800000190734863.
    line = next(
        r for r in read_csv_rows(first_day.output(DAY, "csv")) if (r["order_id"], r["product_id"]) == ("10248", "42")
    )
    source_line = next(r for r in read_csv_rows(SOURCE_CSV) if (r["order_id"], r["product_id"]) == ("10248", "42"))
    assert line["unit_price"] == source_line["unit_price"] == "9.8"
    json_line = next(
        r
        for r in json.loads(first_day.output(DAY, "json").read_text())
        if (r["order_id"], r["product_id"]) == (10248, 42)
    )
    assert '"unit_price":9.8,' in json.dumps(json_line, separators=(",", ":"))


def test_load_refuses_a_day_whose_extracts_did_not_both_complete(pipeline: Pipeline) -> None:
    day = "2024-02-01"
    pipeline.run_ok("extract-postgres", day)
    refused = pipeline.run("load", day)
    assert refused.returncode != 0
    output = refused.stdout + refused.stderr
    assert "load refused for 2024-02-01" in output
    assert "extract-csv did not complete" in output
    assert "then rerun: nw run --date 2024-02-01 --from extract-csv" in output
    with pipeline.analytics() as conn:
        loaded = (
            conn.execute("SELECT count(*) FROM raw._loaded_days WHERE day = %s", [day]).fetchone()[0]
            if conn.execute("SELECT to_regclass('raw._loaded_days')").fetchone()[0]
            else 0
        )
    assert loaded == 0
    status = pipeline.nw("--date", day, "status")
    assert "nw run --date 2024-02-01 --from extract-csv" in status.stdout
