"""Parquet BATCH files loaded through ADBC bulk ingest, and RECORD messages through the parent's path."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import math
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy.engine import URL

from embedded_pg import CONFIG, PASSWORD
from target_postgres_arrow.adbc import adbc_uri, postgres_type
from target_postgres_arrow.sinks import BatchLoadError
from target_postgres_arrow.target import TargetPostgresArrow

SCHEMA = CONFIG["default_target_schema"]
UTC = dt.UTC


def schema_message(stream: str, properties: dict[str, Any] | None = None, keys: list[str] | None = None) -> dict:
    properties = properties or {"id": {"type": ["integer", "null"]}}
    return {"type": "SCHEMA", "stream": stream, "key_properties": keys or [], "schema": {"properties": properties}}


def batch_message(stream: str, *urls: str) -> dict:
    return {
        "type": "BATCH",
        "stream": stream,
        "encoding": {"format": "parquet", "compression": "none"},
        "manifest": list(urls),
    }


def run(*messages: dict, **config: Any) -> None:
    lines = "".join(json.dumps(m) + "\n" for m in messages)
    TargetPostgresArrow(config={**CONFIG, **config}, validate_config=True).listen(io.StringIO(lines))


def write(path: Path, table: pa.Table) -> str:
    pq.write_table(table, path, row_group_size=2)
    return path.as_uri()


def column_types(db: psycopg.Connection, table: str) -> dict[str, str]:
    rows = db.execute(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        (f'"{SCHEMA}"."{table}"',),
    ).fetchall()
    return dict(rows)


BIG_TEXT = ("Grüße, 世界! 🦀 " * 70_000)[:600_000]  # > 1 MB of UTF-8
ALL_BYTES = bytes(range(256))
DEC256 = Decimal("1234567890123456789012345678901234567890.1234567891")  # 50 digits

COLUMNS: dict[str, tuple[pa.DataType, list[Any], str]] = {
    "i16": (pa.int16(), [-32768, 32767, None], "smallint"),
    "i32": (pa.int32(), [-(2**31), 2**31 - 1, None], "integer"),
    "i64": (pa.int64(), [-(2**63), 2**63 - 1, None], "bigint"),
    "f32": (pa.float32(), [float("nan"), -0.0, None], "real"),
    "f64": (pa.float64(), [float("inf"), -0.0, None], "double precision"),
    "f64b": (pa.float64(), [float("-inf"), float("nan"), None], "double precision"),
    "dec": (pa.decimal128(20, 6), [Decimal("12345678901234.123456"), Decimal("-0.000001"), None], "numeric"),
    "dec256": (pa.decimal256(50, 10), [DEC256, DEC256.copy_negate(), None], "numeric"),
    "Txt Col": (pa.string(), [BIG_TEXT, "", None], "text"),
    "bin": (pa.binary(), [ALL_BYTES, b"", None], "bytea"),
    "flag": (pa.bool_(), [True, False, None], "boolean"),
    "day": (pa.date32(), [dt.date(1, 1, 1), dt.date(9999, 12, 31), None], "date"),
    "ts": (
        pa.timestamp("us"),
        [dt.datetime(1, 1, 1, 0, 0, 0, 1), dt.datetime(9999, 12, 31, 23, 59, 59, 999999), None],
        "timestamp without time zone",
    ),
    "tstz": (
        pa.timestamp("us", tz="UTC"),
        [dt.datetime(2024, 2, 29, 23, 59, 59, 123456, tzinfo=UTC), dt.datetime(1970, 1, 1, tzinfo=UTC), None],
        "timestamp with time zone",
    ),
    "ts_ns": (
        pa.timestamp("ns"),
        [dt.datetime(2001, 2, 3, 4, 5, 6, 789012), dt.datetime(1999, 12, 31), None],
        "timestamp without time zone",
    ),
    "tod": (pa.time64("us"), [dt.time(23, 59, 59, 999999), dt.time(0, 0), None], "time without time zone"),
    "ints": (pa.list_(pa.int32()), [[1, None, -3], [], None], "integer[]"),
    "strs": (pa.list_(pa.string()), [["a", None, "ü c"], [None], None], "text[]"),
}
# month_day_nano_interval -> interval is mapped too, but Parquet cannot store that Arrow type.


def all_types_table() -> pa.Table:
    return pa.table(
        {"row": pa.array([0, 1, 2], pa.int64())}
        | {name: pa.array(values, type_) for name, (type_, values, _) in COLUMNS.items()}
    )


def same(expected: Any, actual: Any) -> bool:
    if isinstance(expected, float):
        if math.isnan(expected):
            return isinstance(actual, float) and math.isnan(actual)
        return expected == actual and math.copysign(1, expected) == math.copysign(1, actual)
    if isinstance(expected, Decimal):
        return isinstance(actual, Decimal) and expected == actual and str(expected) == str(actual)
    return expected == actual and type(expected) is type(actual)


def test_every_arrow_type_round_trips(tmp_path: Path, db: psycopg.Connection) -> None:
    url = write(tmp_path / "all.parquet", all_types_table())
    run(schema_message("all_types"), batch_message("all_types", url))

    types = column_types(db, "all_types")
    assert types == {"row": "bigint"} | {name: pg for name, (_, _, pg) in COLUMNS.items()}
    names = list(COLUMNS)
    select = ", ".join(f'"{n}"' for n in names)
    rows = db.execute(f'SELECT {select} FROM "{SCHEMA}".all_types ORDER BY "row"').fetchall()
    assert len(rows) == 3
    for i, row in enumerate(rows):
        for name, actual in zip(names, row, strict=False):
            expected = COLUMNS[name][1][i]
            assert same(expected, actual), (name, i, str(expected)[:80], str(actual)[:80])
    assert rows[2] == (None,) * len(names)  # NULL in every column
    assert len(rows[0][names.index("Txt Col")].encode()) > 1_000_000
    # The stock JSON-Schema table (id bigint + _sdc_* columns) was never created.
    assert "id" not in types and "_sdc_batched_at" not in types


def test_field_metadata_is_left_in_the_file(tmp_path: Path, db: psycopg.Connection) -> None:
    field = pa.field("amount", pa.decimal128(10, 2), metadata={"pg_type": "numeric(10,2)"})
    path = tmp_path / "meta.parquet"
    url = write(path, pa.table([pa.array([Decimal("1.25")], field.type)], schema=pa.schema([field])))
    run(schema_message("meta"), batch_message("meta", url))
    assert db.execute(f'SELECT amount FROM "{SCHEMA}".meta').fetchall() == [(Decimal("1.25"),)]
    assert path.exists()  # delete_batch_files defaults to false
    assert pq.read_schema(path).field("amount").metadata == {b"pg_type": b"numeric(10,2)"}


def test_second_file_adds_columns_and_missing_ones_are_null(tmp_path: Path, db: psycopg.Connection) -> None:
    first = write(tmp_path / "1.parquet", pa.table({"id": pa.array([1], pa.int64()), "name": ["a"]}))
    second = write(
        tmp_path / "2.parquet",
        pa.table({"id": pa.array([2], pa.int64()), "tags": pa.array([["x", None]], pa.list_(pa.string()))}),
    )
    run(schema_message("evolve"), batch_message("evolve", first))
    run(schema_message("evolve"), batch_message("evolve", second))
    assert column_types(db, "evolve") == {"id": "bigint", "name": "text", "tags": "text[]"}
    rows = db.execute(f'SELECT id, name, tags FROM "{SCHEMA}".evolve ORDER BY id').fetchall()
    assert rows == [(1, "a", None), (2, None, ["x", None])]


def test_type_conflict_names_stream_column_and_types(tmp_path: Path, db: psycopg.Connection) -> None:
    run(schema_message("conflict"), batch_message("conflict", write(tmp_path / "a.parquet", pa.table({"v": [1]}))))
    bad = write(tmp_path / "b.parquet", pa.table({"v": ["text"]}))
    with pytest.raises(BatchLoadError, match=r"'conflict', column 'v'.*'bigint'.*Arrow type string.*'text'"):
        run(schema_message("conflict"), batch_message("conflict", bad))
    assert db.execute(f'SELECT v FROM "{SCHEMA}".conflict').fetchall() == [(1,)]


def test_a_table_with_typmods_takes_its_base_types(tmp_path: Path, db: psycopg.Connection) -> None:
    # A table created beforehand with the source's own types: the typmod applies on input.
    db.execute(f'CREATE SCHEMA IF NOT EXISTS "{SCHEMA}"')
    db.execute(
        f'CREATE TABLE "{SCHEMA}".typmods (price numeric(10,2), name varchar(5), code char(3),'
        " at timestamp(3) without time zone, tod time(0) without time zone, flag bpchar)"
    )
    table = pa.table(
        {
            "price": pa.array([Decimal("12.50")], pa.decimal128(10, 2)),
            "name": ["Lyon"],
            "code": ["ab"],
            "at": pa.array([dt.datetime(2024, 1, 2, 3, 4, 5, 678000)], pa.timestamp("us")),
            "tod": pa.array([dt.time(23, 59, 59)], pa.time64("us")),
            "flag": ["Y"],
        }
    )
    run(schema_message("typmods"), batch_message("typmods", write(tmp_path / "t.parquet", table)))
    assert db.execute(f'SELECT price, name, code, at, tod, flag FROM "{SCHEMA}".typmods').fetchall() == [
        (Decimal("12.50"), "Lyon", "ab ", dt.datetime(2024, 1, 2, 3, 4, 5, 678000), dt.time(23, 59, 59), "Y")
    ]


def test_an_array_of_another_element_type_is_refused(tmp_path: Path, db: psycopg.Connection) -> None:
    # Binary COPY of an array names its element type: text[] data cannot fill varchar(5)[].
    db.execute(f'CREATE SCHEMA IF NOT EXISTS "{SCHEMA}"')
    db.execute(f'CREATE TABLE "{SCHEMA}".arrays (tags varchar(5)[])')
    url = write(tmp_path / "a.parquet", pa.table({"tags": pa.array([["x"]], pa.list_(pa.string()))}))
    with pytest.raises(BatchLoadError, match=r"column 'tags'.*'character varying\(5\)\[\]'.*'text\[\]'"):
        run(schema_message("arrays"), batch_message("arrays", url))


def test_unsupported_arrow_type_is_refused(tmp_path: Path) -> None:
    url = write(tmp_path / "s.parquet", pa.table({"s": pa.array([{"a": 1}])}))
    with pytest.raises(BatchLoadError, match=r"'structs', column 's': Arrow type struct<a: int64>"):
        run(schema_message("structs"), batch_message("structs", url))
    with pytest.raises(TypeError):
        postgres_type(pa.list_(pa.list_(pa.int32())))


def test_stream_with_space_and_percent_encoded_uri(tmp_path: Path, db: psycopg.Connection) -> None:
    path = tmp_path / "Order Items.parquet"
    url = write(path, pa.table({"Order ID": pa.array([10, 11], pa.int32()), "Qty": [1.5, 2.0]}))
    assert "Order%20Items" in url
    run(schema_message("Order Items"), batch_message("Order Items", url), delete_batch_files=True)
    assert db.execute(f'SELECT "Order ID", "Qty" FROM "{SCHEMA}"."Order Items" ORDER BY 1').fetchall() == [
        (10, 1.5),
        (11, 2.0),
    ]
    assert not path.exists()  # delete_batch_files


def test_records_use_the_stock_path(db: psycopg.Connection) -> None:
    props = {"id": {"type": "integer"}, "name": {"type": ["string", "null"]}, "price": {"type": ["number", "null"]}}
    records = [
        {"type": "RECORD", "stream": "people", "record": {"id": i, "name": f"n{i}", "price": 1.5}} for i in (1, 2)
    ]
    run(schema_message("people", props, keys=["id"]), *records)
    types = column_types(db, "people")
    assert types["id"] == "bigint" and types["price"] == "numeric" and "_sdc_batched_at" in types
    assert db.execute(f'SELECT id, name, price FROM "{SCHEMA}".people ORDER BY id').fetchall() == [
        (1, "n1", Decimal("1.5")),
        (2, "n2", Decimal("1.5")),
    ]


def test_schema_only_stream_still_gets_its_table(db: psycopg.Connection) -> None:
    run(schema_message("empty_stream"))
    assert "id" in column_types(db, "empty_stream")


def test_activate_version_keeps_batch_rows(tmp_path: Path, db: psycopg.Connection) -> None:
    url = write(tmp_path / "v.parquet", pa.table({"id": [1, 2]}))
    activate = {"type": "ACTIVATE_VERSION", "stream": "versioned", "version": 99}
    run(schema_message("versioned"), batch_message("versioned", url), activate, hard_delete=True)
    assert db.execute(f'SELECT count(*) FROM "{SCHEMA}".versioned').fetchone() == (2,)


def test_non_append_load_method_is_refused(tmp_path: Path) -> None:
    url = write(tmp_path / "u.parquet", pa.table({"id": [1]}))
    with pytest.raises(BatchLoadError, match="load_method 'upsert' is not supported"):
        run(schema_message("upserted", keys=["id"]), batch_message("upserted", url), load_method="upsert")


def test_adbc_uri_encodes_credentials_and_password_is_not_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    uri = adbc_uri(
        URL.create("postgresql+psycopg", "u@x", PASSWORD, "127.0.0.1", 5432, "my db", {"sslmode": "require"})
    )
    assert uri == "postgresql://u%40x:p%40ss%20w%3Ard%2F%25%3F%23@127.0.0.1:5432/my%20db?sslmode=require"
    caplog.set_level(logging.DEBUG)
    run(schema_message("logged"), batch_message("logged", write(tmp_path / "l.parquet", pa.table({"id": [1]}))))
    assert "loaded 1 rows" in caplog.text
    assert PASSWORD not in caplog.text and "p%40ss" not in caplog.text
