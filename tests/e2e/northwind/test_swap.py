"""The load's commit on a real Postgres: a staged day becomes a partition of raw (no row copied),
replaces the old day, leaves the other days alone; a raw table from before partitioning keeps working."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from psycopg import sql
from support import Pipeline

from northwind_elt.core import settings
from northwind_elt.core.errors import PipelineError
from northwind_elt.protocol.swap import day_schema, prepare_staging, staging_schema, swap_day

DB = "swap_test"
DAY1, DAY2 = dt.date(2024, 5, 1), dt.date(2024, 5, 2)
ITEMS = "Order Items"  # a space and a capital: every identifier is quoted
# Each column: Arrow type in the file, the Postgres type the file records.
ITEM_COLUMNS = {
    "id": (pa.int32(), "integer"),
    "price": (pa.decimal128(10, 2), "numeric(10,2)"),
    "tag": (pa.string(), "uuid"),
}


@pytest.fixture(scope="module")
def warehouse(pipeline: Pipeline) -> Iterator[settings.PgConn]:
    with pipeline.admin() as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB)))
        admin.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(DB), sql.Identifier(pipeline.env["ANALYTICS_PG_USER"])
            )
        )
    e = pipeline.env
    yield settings.PgConn(
        e["ANALYTICS_PG_HOST"], int(e["ANALYTICS_PG_PORT"]), e["ANALYTICS_PG_USER"], e["ANALYTICS_PG_PASSWORD"], DB
    )
    with pipeline.admin() as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB)))


def partition_file(path: Path, columns: dict[str, tuple[pa.DataType, str]], rows: list[tuple]) -> Path:
    fields = [pa.field(name, kind, metadata={"pg_type": pg}) for name, (kind, pg) in columns.items()]
    arrays = [pa.array([row[i] for row in rows], f.type) for i, f in enumerate(fields)]
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_arrays(arrays, schema=pa.schema(fields)), path)
    return path


def load(target: settings.PgConn, day: dt.date, load_id: str, tables: dict[str, tuple[Path, list[tuple]]]) -> None:
    """What `nw begin load`, the target and `nw commit load` do, with the rows inserted by hand."""
    prepare_staging(target, "load", day, {name: path for name, (path, _) in tables.items()})
    with psycopg.connect(target.conninfo(), autocommit=True) as conn:
        for name, (_, rows) in tables.items():
            for row in rows:
                conn.execute(
                    sql.SQL("INSERT INTO {} VALUES ({})").format(
                        sql.Identifier(staging_schema(day), name), sql.SQL(", ").join(sql.Placeholder() * len(row))
                    ),
                    row,
                )
    intent = {
        "load_id": load_id,
        "streams": [{"name": name, "files": [{"path": str(path)}]} for name, (path, _) in tables.items()],
        "tables": {name: len(rows) for name, (_, rows) in tables.items()},
    }
    swap_day(target, "load", day, intent)


def query(target: settings.PgConn, text: str, *params) -> list[tuple]:
    with psycopg.connect(target.conninfo()) as conn:
        return conn.execute(text, params).fetchall()


def item_rows(n: int, start: int = 1) -> list[tuple]:
    return [(i, Decimal(f"{i}.25"), str(uuid.uuid5(uuid.NAMESPACE_OID, str(i)))) for i in range(start, start + n)]


def test_a_day_becomes_a_partition_of_raw_with_the_sources_types_and_replaces_the_old_day(
    warehouse: settings.PgConn, tmp_path: Path
) -> None:
    first, second, other = item_rows(3), item_rows(2, start=10), item_rows(1, start=20)
    load(warehouse, DAY1, "L1", {ITEMS: (partition_file(tmp_path / "1.parquet", ITEM_COLUMNS, first), first)})
    load(warehouse, DAY2, "L2", {ITEMS: (partition_file(tmp_path / "2.parquet", ITEM_COLUMNS, other), other)})
    load(warehouse, DAY1, "L3", {ITEMS: (partition_file(tmp_path / "3.parquet", ITEM_COLUMNS, second), second)})

    assert query(warehouse, "SELECT relkind::text FROM pg_class WHERE oid = 'raw.\"Order Items\"'::regclass") == [
        ("p",)
    ]
    types = query(
        warehouse,
        "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute"
        " WHERE attrelid = 'raw.\"Order Items\"'::regclass AND attnum > 0 ORDER BY attnum",
    )
    assert types == [
        ("id", "integer"),
        ("price", "numeric(10,2)"),
        ("tag", "uuid"),
        ("_day", "date"),
        ("_load_id", "text"),
    ]
    got = query(warehouse, 'SELECT _day, _load_id, id, price, tag::text FROM raw."Order Items" ORDER BY _day, id')
    assert got == [(DAY1, "L3", *row) for row in second] + [(DAY2, "L2", *row) for row in other]
    # Each day is its own partition in its own schema; the staging schemas are gone.
    schemas = {r[0] for r in query(warehouse, "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'raw%%'")}
    assert schemas == {"raw", day_schema(DAY1), day_schema(DAY2)}


def test_the_staged_table_itself_becomes_the_day_no_row_is_copied(warehouse: settings.PgConn, tmp_path: Path) -> None:
    columns = {"id": (pa.int64(), "bigint"), "name": (pa.string(), "character varying(20)")}
    rows = [(1, "Lyon"), (2, "Graz")]
    path = partition_file(tmp_path / "plain.parquet", columns, rows)
    prepare_staging(warehouse, "load", DAY1, {"plain": path})
    with psycopg.connect(warehouse.conninfo(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("INSERT INTO {} VALUES (1, 'Lyon'), (2, 'Graz')").format(
                sql.Identifier(staging_schema(DAY1), "plain")
            )
        )
        staged_file = conn.execute(
            "SELECT pg_relation_filenode(%s::regclass)", [f'"{staging_schema(DAY1)}".plain']
        ).fetchone()[0]
    swap_day(
        warehouse,
        "load",
        DAY1,
        {"load_id": "L9", "streams": [{"name": "plain", "files": [{"path": str(path)}]}], "tables": {"plain": 2}},
    )
    partition = f'"{day_schema(DAY1)}".plain'
    assert query(warehouse, "SELECT pg_relation_filenode(%s::regclass)", partition) == [(staged_file,)]
    assert query(warehouse, "SELECT id, name, _day, _load_id FROM raw.plain ORDER BY id") == [
        (1, "Lyon", DAY1, "L9"),
        (2, "Graz", DAY1, "L9"),
    ]


def test_a_table_missing_from_a_days_load_loses_that_day_only(warehouse: settings.PgConn, tmp_path: Path) -> None:
    columns = {"id": (pa.int64(), "bigint")}
    for day, load_id in ((DAY1, "A1"), (DAY2, "A2")):
        load(
            warehouse,
            day,
            load_id,
            {"gone": (partition_file(tmp_path / f"{load_id}.parquet", columns, [(1,)]), [(1,)])},
        )
    keep = item_rows(1)
    load(warehouse, DAY1, "A3", {ITEMS: (partition_file(tmp_path / "keep.parquet", ITEM_COLUMNS, keep), keep)})
    assert query(warehouse, "SELECT _day, _load_id FROM raw.gone") == [(DAY2, "A2")]


def test_a_raw_table_from_before_partitioning_gets_its_day_replaced_in_place(
    warehouse: settings.PgConn, tmp_path: Path
) -> None:
    with psycopg.connect(warehouse.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS raw")
        conn.execute("CREATE TABLE raw.legacy (id bigint, _day date, _load_id text)")
        conn.execute("INSERT INTO raw.legacy VALUES (1, %s, 'old'), (2, %s, 'old')", [DAY1, DAY2])
    columns = {"id": (pa.int64(), "bigint")}
    rows = [(7,), (8,), (9,)]
    load(warehouse, DAY1, "N1", {"legacy": (partition_file(tmp_path / "legacy.parquet", columns, rows), rows)})
    assert query(warehouse, "SELECT relkind::text FROM pg_class WHERE oid = 'raw.legacy'::regclass") == [("r",)]
    assert query(warehouse, "SELECT id, _day, _load_id FROM raw.legacy ORDER BY _day, id") == [
        (7, DAY1, "N1"),
        (8, DAY1, "N1"),
        (9, DAY1, "N1"),
        (2, DAY2, "old"),
    ]


def test_a_column_whose_type_changed_at_the_source_is_refused_and_raw_is_untouched(
    warehouse: settings.PgConn, tmp_path: Path
) -> None:
    columns = {"id": (pa.int64(), "bigint"), "amount": (pa.decimal128(10, 2), "numeric(10,2)")}
    rows = [(1, Decimal("1.50"))]
    load(warehouse, DAY1, "T1", {"amounts": (partition_file(tmp_path / "t1.parquet", columns, rows), rows)})
    wider = {"id": (pa.int64(), "bigint"), "amount": (pa.decimal128(12, 4), "numeric(12,4)")}
    changed = [(1, Decimal("1.5001"))]
    with pytest.raises(
        PipelineError,
        match=r"""'amount' of "raw"."amounts" is numeric\(10,2\) but the day's file has numeric\(12,4\)""",
    ):
        load(warehouse, DAY1, "T2", {"amounts": (partition_file(tmp_path / "t2.parquet", wider, changed), changed)})
    assert query(warehouse, "SELECT amount, _load_id FROM raw.amounts") == [(Decimal("1.50"), "T1")]


def test_a_wider_raw_column_takes_a_day_of_the_narrower_type_and_widening_raw_lets_both_load(
    warehouse: settings.PgConn, tmp_path: Path
) -> None:
    narrow = {"id": (pa.int64(), "bigint"), "amount": (pa.decimal128(10, 2), "numeric(10,2)")}
    wide = {"id": (pa.int64(), "bigint"), "amount": (pa.decimal128(12, 4), "numeric(12,4)")}
    old_rows, new_rows = [(1, Decimal("12345678.25"))], [(2, Decimal("12345678.1234"))]
    load(warehouse, DAY1, "W1", {"widened": (partition_file(tmp_path / "w1.parquet", narrow, old_rows), old_rows)})
    with psycopg.connect(warehouse.conninfo(), autocommit=True) as conn:  # the documented fix
        conn.execute("ALTER TABLE raw.widened ALTER COLUMN amount TYPE numeric(12,4)")
    load(warehouse, DAY2, "W2", {"widened": (partition_file(tmp_path / "w2.parquet", wide, new_rows), new_rows)})
    load(warehouse, DAY1, "W3", {"widened": (partition_file(tmp_path / "w3.parquet", narrow, old_rows), old_rows)})
    assert query(warehouse, "SELECT _day, _load_id, id, amount FROM raw.widened ORDER BY _day") == [
        (DAY1, "W3", 1, Decimal("12345678.2500")),
        (DAY2, "W2", 2, Decimal("12345678.1234")),
    ]


def test_a_column_dropped_at_the_source_is_null_on_later_days_and_an_empty_table_is_a_day(
    warehouse: settings.PgConn, tmp_path: Path
) -> None:
    both = {"id": (pa.int64(), "bigint"), "city": (pa.string(), "text")}
    only_id = {"id": (pa.int64(), "bigint")}
    load(
        warehouse,
        DAY1,
        "D1",
        {"dropped": (partition_file(tmp_path / "d1.parquet", both, [(1, "Lyon")]), [(1, "Lyon")])},
    )
    load(warehouse, DAY2, "D2", {"dropped": (partition_file(tmp_path / "d2.parquet", only_id, [(2,)]), [(2,)])})
    assert query(warehouse, "SELECT _day, id, city FROM raw.dropped ORDER BY _day") == [
        (DAY1, 1, "Lyon"),
        (DAY2, 2, None),
    ]
    load(warehouse, DAY2, "D3", {"dropped": (partition_file(tmp_path / "d3.parquet", only_id, []), [])})
    assert query(warehouse, "SELECT _day, id FROM raw.dropped ORDER BY _day") == [(DAY1, 1)]
    assert query(warehouse, "SELECT count(*) FROM raw._loaded_days WHERE day = %s AND load_id = 'D3'", DAY2) == [(1,)]


def test_every_column_whose_type_changed_is_named_in_every_table_and_raw_is_untouched(
    warehouse: settings.PgConn, tmp_path: Path
) -> None:
    before = {
        "changed_a": {
            "id": (pa.int64(), "bigint"),
            "n": (pa.decimal128(10, 2), "numeric(10,2)"),
            "c": (pa.string(), "character(5)"),
        },
        "changed_b": {"id": (pa.int32(), "integer"), "v": (pa.string(), "character varying(15)")},
    }
    after = {  # what raw cannot hold unchanged: numeric(10,2) -> (12,4), char(5) -> text, integer -> text
        "changed_a": {
            "id": (pa.int64(), "bigint"),
            "n": (pa.decimal128(12, 4), "numeric(12,4)"),
            "c": (pa.string(), "text"),
        },
        "changed_b": {"id": (pa.string(), "text"), "v": (pa.string(), "character varying(15)")},
    }
    rows = {"changed_a": [(1, Decimal("1.50"), "ab")], "changed_b": [(1, "x")]}
    load(
        warehouse,
        DAY1,
        "C1",
        {t: (partition_file(tmp_path / f"{t}-1.parquet", before[t], rows[t]), rows[t]) for t in before},
    )
    new_rows = {"changed_a": [(2, Decimal("1.5001"), "cd")], "changed_b": [("2", "y")]}
    with pytest.raises(PipelineError) as raised:
        load(
            warehouse,
            DAY1,
            "C2",
            {t: (partition_file(tmp_path / f"{t}-2.parquet", after[t], new_rows[t]), new_rows[t]) for t in after},
        )
    changed = [
        (table, column, before[table][column][1], after[table][column][1])
        for table in before
        for column in before[table]
        if before[table][column][1] != after[table][column][1]
    ]
    message = str(raised.value)
    for table, column, old, new in changed:
        assert f"""column '{column}' of "raw"."{table}" is {old} but the day's file has {new}""" in message
    assert f"the source changed {len(changed)} columns' types" in message
    assert query(warehouse, "SELECT id, _load_id FROM raw.changed_a") == [(1, "C1")]
    assert query(warehouse, "SELECT id, _load_id FROM raw.changed_b") == [(1, "C1")]


def test_every_column_the_load_adds_is_named_for_every_table_and_nothing_is_staged(
    warehouse: settings.PgConn, tmp_path: Path
) -> None:
    files = {
        "has_day": partition_file(
            tmp_path / "d.parquet", {"id": (pa.int32(), "integer"), "_day": (pa.date32(), "date")}, []
        ),
        "has_both": partition_file(
            tmp_path / "b.parquet", {"_load_id": (pa.string(), "text"), "_day": (pa.date32(), "date")}, []
        ),
    }
    with pytest.raises(PipelineError) as raised:
        prepare_staging(warehouse, "load", DAY2, files)
    message = str(raised.value)
    assert "2 tables of the day cannot be loaded" in message
    for table, path in files.items():
        reserved = [n for n in pq.read_schema(path).names if n in ("_day", "_load_id")]
        found = ", ".join(f"column {n!r}: the load adds a column of that name to every row" for n in reserved)
        assert f"{path}: table {table!r}: {found}" in message
    assert query(warehouse, "SELECT to_regnamespace(%s)", staging_schema(DAY2)) == [(None,)]
