"""Every Postgres type arrives unchanged: source = Parquet = raw, value by value and type by type."""

from __future__ import annotations

import math
from decimal import Decimal

import pyarrow.parquet as pq
import pytest
from psycopg import sql
from support import Pipeline, partition_file

DAY = "2024-07-01"
TABLE = "Type Zoo"
COLUMNS = {
    "id": "integer",
    "small": "smallint",
    "big": "bigint",
    "r": "real",
    "d": "double precision",
    "n20": "numeric(20,6)",
    "n_tiny": "numeric(30,28)",
    "n_free": "numeric",
    "txt": "text",
    "vc": "character varying(10)",
    "c5": "character(5)",
    "raw_bytes": "bytea",
    "flag": "boolean",
    "dt": "date",
    "ts": "timestamp without time zone",
    "tstz": "timestamp with time zone",
    "tm": "time without time zone",
    "iv": "interval",
    "u": "uuid",
    "j": "json",
    "jb": "jsonb",
    "tags": "text[]",
    "nums": "integer[]",
    "ip": "inet",
    "net": "cidr",
    "mac": "macaddr",
}
# Three rows of edge values and one row of NULLs (id 4).
ROWS = [
    "(1, -32768, -9223372036854775808, 'NaN', 'Infinity', 12345678901234.123456,"
    " 0.0000000000000000000000000001, 123456789012345678901234567890.000000000001,"
    " repeat('é', 524288), 'x', 'ab', (SELECT string_agg(set_byte('\\x00'::bytea, 0, b), ''::bytea ORDER BY b)"
    " FROM generate_series(0, 255) b), true, '0001-01-01', '2024-01-15 10:11:12.123456',"
    " '2024-01-15 10:00:00.123456+05:30', '23:59:59.999999', '1 year 2 mons 3 days 04:05:06.789',"
    ' \'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\', \'{"a": [1, 2.50, null], "b": {"c": "δ"}}\','
    ' \'{"b": {"c": true}, "a": [1, "x", null, 2.5]}\', ARRAY[\'x\', NULL, \'z\'], ARRAY[1, NULL, 3],'
    " '192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03')",
    "(2, 32767, 9223372036854775807, '-Infinity', '-0', -99999999999999.999999,"
    " -0.0000000000000000000000000001, 0, 'Γιώργος დავითი ᚦᚢᚱ 东 😀', 'ÿ', 'abcde', '\\x'::bytea, false,"
    " '9999-12-31', '9999-12-31 23:59:59.999999', '1970-01-01 00:00:00+00', '00:00:00', '-1 mons +2 days -00:00:01',"
    " '00000000-0000-0000-0000-000000000000', '[]', '[{}, [], 0]', ARRAY[]::text[], ARRAY[NULL]::int[],"
    " '::1', '2001:db8::/32', '00:00:00:00:00:00')",
    "(3, 0, 0, '-0', 'NaN', 0.000001, 0, -1e-30, '', '', '', '\\xdeadbeef', NULL, '2000-02-29',"
    " '2024-02-29 00:00:00', '2024-03-31 01:30:00-04:00', '12:00:00.000001', '0', NULL, 'null', 'null',"
    " ARRAY['a,b', 'c\"d', 'NULL'], ARRAY[-2147483648, 2147483647], NULL, NULL, NULL)",
    "(4" + ", NULL" * (len(COLUMNS) - 1) + ")",
]


@pytest.fixture(scope="module")
def zoo_day(pipeline: Pipeline):
    ddl = sql.SQL("CREATE TABLE {} ({})").format(
        sql.Identifier(TABLE),
        sql.SQL(", ").join(sql.SQL("{} " + t).format(sql.Identifier(c)) for c, t in COLUMNS.items()),
    )
    with pipeline.admin() as conn:
        conn.execute(ddl)
        # The rows hold JSON braces: only the table name goes through format().
        conn.execute(sql.SQL("INSERT INTO {} VALUES ").format(sql.Identifier(TABLE)) + sql.SQL(", ".join(ROWS)))
    try:
        pipeline.load_ok(DAY)
        yield ddl
    finally:
        with pipeline.admin() as conn:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(TABLE)))


def test_raw_has_the_source_types(pipeline: Pipeline, zoo_day) -> None:
    with pipeline.analytics() as conn:
        got = dict(
            conn.execute(
                "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
                " WHERE attrelid = 'raw.\"Type Zoo\"'::regclass AND attnum > 0 AND NOT attisdropped"
            ).fetchall()
        )
    assert got == COLUMNS | {"_day": "date", "_load_id": "text"}


def test_raw_equals_the_source_value_by_value_in_sql(pipeline: Pipeline, zoo_day) -> None:
    # The source's rows, copied in Postgres's binary format into a table of the same
    # definition next to raw: then SQL compares each value on its original type.
    with pipeline.source() as src, pipeline.analytics() as dst:
        dst.execute("DROP TABLE IF EXISTS pg_temp.expected")
        dst.execute(zoo_day.as_string(dst).replace(f'CREATE TABLE "{TABLE}"', "CREATE TEMP TABLE expected", 1))
        with (
            src.cursor().copy(sql.SQL("COPY {} TO STDOUT (FORMAT binary)").format(sql.Identifier(TABLE))) as out,
            dst.cursor().copy("COPY expected FROM STDIN (FORMAT binary)") as into,
        ):
            for block in out:
                into.write(block)
        assert dst.execute("SELECT count(*) FROM expected").fetchone() == (len(ROWS),)
        assert dst.execute('SELECT count(*) FROM raw."Type Zoo" WHERE _day = %s', [DAY]).fetchone() == (len(ROWS),)
        for column in COLUMNS:
            col = sql.Identifier(column)
            # json has no equality operator; -0 = 0 in Postgres, so the text form is compared too.
            same = sql.SQL("e.{c}::text IS NOT DISTINCT FROM r.{c}::text").format(c=col)
            if COLUMNS[column] != "json":
                same = sql.SQL("e.{c} IS NOT DISTINCT FROM r.{c} AND ").format(c=col) + same
            differing = dst.execute(
                sql.SQL(
                    'SELECT e.id FROM expected e JOIN raw."Type Zoo" r ON r.id = e.id AND r._day = %s WHERE NOT ({})'
                ).format(same),
                [DAY],
            ).fetchall()
            assert differing == [], f"{column} ({COLUMNS[column]}) differs in rows {differing}"


def _python_equal(want, got) -> bool:
    if isinstance(want, float) and isinstance(got, float):
        return (math.isnan(want) and math.isnan(got)) or (
            want == got and math.copysign(1, want) == math.copysign(1, got)
        )
    return want == got


def test_the_parquet_partition_holds_the_source_values_and_types(pipeline: Pipeline, zoo_day) -> None:
    partition = partition_file(pipeline.data_dir, "postgres", "Type Zoo", DAY)
    table = pq.read_table(partition)
    declared = {f.name: (f.metadata or {}).get(b"pg_type", b"").decode() for f in table.schema}
    assert declared == COLUMNS
    # Kept as their canonical text in Parquet: no Arrow type holds them exactly.
    as_text = ("numeric", "interval", "uuid", "json", "jsonb", "inet", "cidr", "macaddr")
    exact = [c for c, t in COLUMNS.items() if t not in as_text]
    text_kept = [c for c in COLUMNS if c not in exact]
    with pipeline.source() as src:
        select = sql.SQL(", ").join(
            [sql.Identifier(c) for c in exact] + [sql.SQL("{}::text").format(sql.Identifier(c)) for c in text_kept]
        )
        rows = src.execute(sql.SQL("SELECT {} FROM {} ORDER BY id").format(select, sql.Identifier(TABLE))).fetchall()
    by_id = {row["id"]: row for row in table.to_pylist()}
    for row in rows:
        want = dict(zip(exact + text_kept, row, strict=True))
        got = by_id[want["id"]]
        for column, value in want.items():
            got_value = got[column]
            if isinstance(value, Decimal) and isinstance(got_value, Decimal):
                same_scale = value.as_tuple().exponent == got_value.as_tuple().exponent
                assert value == got_value and same_scale, (column, value, got_value)
            else:
                assert _python_equal(value, got_value), (column, want["id"], value, got_value)
