"""End-to-end: the tap in-process with batch_config, Parquet compared value by value with Postgres."""

from __future__ import annotations

import decimal
import json
import logging
import math
import struct
import urllib.parse
import warnings
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from tap_postgres_arrow.stream import NAME_MAX, PostgresArrowStream, adbc_uri, batch_stem, fitted
from tap_postgres_arrow.tables import Relation, choose_tables, parse_names
from tap_postgres_arrow.tap import ExtractionFailedError, TapPostgresArrow

from conftest import BIG_TEXT, CJK_NAME, PASSWORD, PERCENT_NAME, capture_stdout, make_catalog, tap_config


def run_tap(
    config: dict, selected: dict[str, str | None], out_dir: Path | None, state: dict | None = None, prefix: str = "pre-"
):
    """Run sync_all in-process; returns (messages, error or None)."""
    config = dict(config)
    if out_dir is not None:
        config["batch_config"] = {
            "encoding": {"format": "parquet", "compression": "none"},
            "storage": {"root": out_dir.as_uri(), "prefix": prefix},
        }
    tap = TapPostgresArrow(config=config, catalog=make_catalog(config, selected), state=state or {})
    error = None
    with capture_stdout() as messages:
        try:
            tap.sync_all()
        except ExtractionFailedError as exc:
            error = exc
    return messages, error


def batch_files(messages: list[dict], stream: str) -> list[Path]:
    uris = [u for m in messages if m["type"] == "BATCH" and m["stream"] == stream for u in m["manifest"]]
    return [Path(urllib.parse.unquote(urllib.parse.urlparse(u).path)) for u in uris]


def read_stream(messages: list[dict], stream: str) -> pa.Table:
    files = batch_files(messages, stream)
    assert files, f"no BATCH for {stream}"
    return pa.concat_tables([pq.read_table(f) for f in files])


def last_state(messages: list[dict]) -> dict:
    return [m for m in messages if m["type"] == "STATE"][-1]["value"]


# --------------------------------------------------------------------------- the type zoo

FLOAT_TEXT = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}

EXPECTED_PG_TYPE_OVERRIDES = {  # user-defined types are described as text; domains as their base
    "c_enum": "text",
    "c_pair": "text",
    "c_enum_arr": "text[]",
    "c_dom": "numeric(10,2)",
    "c_posint": "integer",
}


@pytest.fixture(scope="module")
def zoo(pg, tmp_path_factory):
    out = tmp_path_factory.mktemp("zoo")
    messages, error = run_tap(tap_config(pg, "public"), {"public-type_zoo": None}, out)
    assert error is None
    return messages, read_stream(messages, "public-type_zoo")


def test_zoo_messages(zoo):
    messages, table = zoo
    kinds = [m["type"] for m in messages]
    assert "RECORD" not in kinds
    assert kinds.count("BATCH") == 1
    batch = next(m for m in messages if m["type"] == "BATCH")
    assert batch["encoding"] == {"format": "parquet", "compression": "none"}
    assert Path(batch_files(messages, "public-type_zoo")[0]).name.startswith("pre-public-type_zoo-")
    assert table.num_rows == 5
    assert table.schema.metadata[b"pg_table"] == b"public.type_zoo"


def test_zoo_pg_type_metadata(zoo, db):
    _, table = zoo
    rows = db.execute(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = 'public.type_zoo'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
    ).fetchall()
    assert [f.name for f in table.schema] == [r[0] for r in rows]
    for name, fmt in rows:
        meta = table.schema.field(name).metadata
        assert meta[b"pg_type"].decode() == EXPECTED_PG_TYPE_OVERRIDES.get(name, fmt), name
        assert meta[b"pg_column"].decode() == name


def test_zoo_arrow_types(zoo):
    _, table = zoo
    s = table.schema
    expect = {
        "c_int2": pa.int16(),
        "c_int4": pa.int32(),
        "c_int8": pa.int64(),
        "c_real": pa.float32(),
        "c_double": pa.float64(),
        "c_bool": pa.bool_(),
        "c_date": pa.date32(),
        "c_ts": pa.timestamp("us"),
        "c_tstz": pa.timestamp("us", tz="UTC"),
        "c_time": pa.time64("us"),
        "c_bytea": pa.binary(),
        "c_text": pa.string(),
        "c_char": pa.string(),
        "c_num_ps": pa.decimal128(20, 6),
        "c_num": pa.string(),
        "c_num_wide": pa.decimal256(50, 10),
        "c_num_neg": pa.string(),
        "c_interval": pa.string(),
        "c_uuid": pa.string(),
        "c_jsonb": pa.string(),
        "c_inet": pa.string(),
        "c_dom": pa.decimal128(10, 2),
        "c_posint": pa.int32(),
        "c_text_arr": pa.list_(pa.string()),
        "c_int_arr": pa.list_(pa.int32()),
        "c_uuid_arr": pa.list_(pa.string()),
        "c_num_arr": pa.list_(pa.string()),
    }
    for name, typ in expect.items():
        got = s.field(name).type
        assert got == typ or (pa.types.is_list(got) and got.value_type == typ.value_type), (name, got)


def _same_float(pq_value, pg_text: str, *, single: bool) -> bool:
    if pg_text in FLOAT_TEXT:
        want = FLOAT_TEXT[pg_text]
        return math.isnan(pq_value) if math.isnan(want) else pq_value == want
    want = float(pg_text)
    if want == 0:
        return pq_value == 0 and math.copysign(1, pq_value) == math.copysign(1, want)
    fmt = "f" if single else "d"
    return struct.pack(fmt, pq_value) == struct.pack(fmt, want)


def test_zoo_values_match_postgres(zoo, db):
    """Every cell against what Postgres returns for the same row (native value, ::text or ::text[])."""
    _, table = zoo
    by_id = {r["id"]: r for r in table.to_pylist()}
    ids = sorted(by_id)
    checked = 0
    for field in table.schema:
        name = field.name
        ident = '"' + name.replace('"', '""') + '"'
        cast = "::numeric::text" if name == "c_money" else "::text"  # money: plain number, not locale text
        pg_text = dict(db.execute(f"SELECT id, {ident}{cast} FROM public.type_zoo").fetchall())
        pg_native = dict(db.execute(f"SELECT id, {ident} FROM public.type_zoo").fetchall())
        is_list = pa.types.is_list(field.type)
        if is_list and field.type.value_type == pa.string():
            pg_list = dict(db.execute(f"SELECT id, {ident}::text[] FROM public.type_zoo").fetchall())
        for i in ids:
            got, text = by_id[i][name], pg_text[i]
            if text is None:
                assert got is None, (name, i)
                continue
            typ = field.type
            if pa.types.is_floating(typ):
                assert _same_float(got, text, single=typ == pa.float32()), (name, i, got, text)
            elif pa.types.is_decimal(typ):
                assert str(got) == text, (name, i)
                assert isinstance(got, decimal.Decimal)
            elif pa.types.is_string(typ) and field.metadata[b"pg_type"].startswith((b"character", b"text")):
                assert got == pg_native[i], (name, i)  # native text; char(n) keeps its padding
            elif pa.types.is_string(typ):
                assert got == text, (name, i, got, text)
            elif is_list and typ.value_type == pa.string():
                assert got == pg_list[i], (name, i)
            else:  # native: Python value decoded by psycopg (binary-exact)
                assert got == pg_native[i], (name, i, got, pg_native[i])
            checked += 1
    assert checked > 80  # non-NULL cells


def test_zoo_spot_values(zoo):
    _, table = zoo
    row = {r["id"]: r for r in table.to_pylist()}[1]
    assert row["c_num_ps"] == decimal.Decimal("12345678901234.123456")
    assert row["c_num"] == "123456789012345678901234567890.000000000001"
    assert row["c_char"] == "ab   "
    assert row["c_interval"] == "1 year 2 mons 3 days 04:05:06.789"
    assert row["c_tstz"].isoformat() == "2024-01-15T04:30:00.123456+00:00"
    assert row["c_bytea"] == bytes(range(256))
    assert row["c_text"] == BIG_TEXT
    assert row["c_int_arr"] == [1, None, -3]
    assert row["c_text_arr"] == ["a", None, "c d", ""]
    assert row["c_money"] == "1234.56"
    assert row["c_enum"] == "happy"
    assert row["c_jsonb"] == '{"e": {}, "nested": {"a": [1, "two", null, 3.14159265358979]}}'
    assert row["c_date"].isoformat() == "0001-01-01"


# --------------------------------------------------------------------------- names, empty, rotation


def test_odd_table_names_and_empty_table(pg, tmp_path):
    selected = {"public-Order Items": None, "public-../../x": None, "public-empty_tbl": None}
    messages, error = run_tap(tap_config(pg, "public"), selected, tmp_path)
    assert error is None
    files = [f for s in selected for f in batch_files(messages, s)]
    assert all(f.parent == tmp_path for f in files)
    names = sorted(f.name.rsplit("-", 2)[0] for f in files)
    assert names == ["pre-public-..%2F..%2Fx", "pre-public-Order%20Items", "pre-public-empty_tbl"]
    items = read_stream(messages, "public-Order Items")
    assert items.column_names == ["Item ID", "Qty", 'Name "q" x']
    assert items.schema.field("Qty").type == pa.decimal128(5, 2)
    assert items.column("Qty").to_pylist() == [decimal.Decimal("2.50"), decimal.Decimal("999.99")]
    assert read_stream(messages, "public-../../x").to_pylist() == [{"Weird.Col": 7}]
    empty = read_stream(messages, "public-empty_tbl")
    assert len(batch_files(messages, "public-empty_tbl")) == 1
    assert empty.num_rows == 0
    assert empty.schema.field("v").type == pa.decimal128(8, 3)
    assert empty.schema.field("v").metadata[b"pg_type"] == b"numeric(8,3)"


def test_file_rotation_and_state_per_file(pg, tmp_path, monkeypatch):
    monkeypatch.setattr(PostgresArrowStream, "rows_per_file", 3)
    messages, error = run_tap(tap_config(pg, "public"), {"public-events": "updated_at"}, tmp_path)
    assert error is None
    files = batch_files(messages, "public-events")
    assert [pq.read_metadata(f).num_rows for f in files] == [3, 3, 3, 1]
    assert [f.name[-13:] for f in files] == [f"{n:05d}.parquet" for n in range(4)]
    kinds = [m["type"] for m in messages if m["type"] in {"BATCH", "STATE"}]
    for i, kind in enumerate(kinds):  # every BATCH is followed by a STATE
        if kind == "BATCH":
            assert kinds[i + 1] == "STATE"
    bookmarks = [
        m["value"]["bookmarks"]["public-events"].get("replication_key_value") for m in messages if m["type"] == "STATE"
    ]
    assert "2024-01-01T03:00:00.000000+00:00" in bookmarks  # after the first file (rows 1-3)
    assert bookmarks[-1] == "2024-01-01T10:00:00.000000+00:00"


# --------------------------------------------------------------------------- incremental


def test_incremental_then_resume_inclusive(pg, tmp_path):
    config = tap_config(pg, "public")
    messages, error = run_tap(config, {"public-events": "updated_at"}, tmp_path / "1")
    assert error is None
    first = read_stream(messages, "public-events")
    assert first.column("id").to_pylist() == list(range(1, 11))
    state = last_state(messages)
    bookmark = state["bookmarks"]["public-events"]
    assert bookmark["replication_key"] == "updated_at"
    assert bookmark["replication_key_value"] == "2024-01-01T10:00:00.000000+00:00"
    # The bookmark is inclusive (WHERE key >= bookmark, like the SDK's SQL streams): row 10 comes again.
    messages2, error = run_tap(config, {"public-events": "updated_at"}, tmp_path / "2", state=state)
    assert error is None
    assert read_stream(messages2, "public-events").column("id").to_pylist() == [10]
    assert last_state(messages2)["bookmarks"]["public-events"]["replication_key_value"] == (
        "2024-01-01T10:00:00.000000+00:00"
    )


def test_incremental_numeric_key_uses_postgres_order(pg, tmp_path):
    """An unconstrained numeric key travels as text; the bookmark is Postgres' max (100), not text max (11)."""
    config = tap_config(pg, "public")
    messages, error = run_tap(config, {"public-events_num": "seq"}, tmp_path / "1")
    assert error is None
    state = last_state(messages)
    assert state["bookmarks"]["public-events_num"]["replication_key_value"] == "100"
    messages2, _ = run_tap(config, {"public-events_num": "seq"}, tmp_path / "2", state=state)
    assert read_stream(messages2, "public-events_num").column("id").to_pylist() == [3]


def test_without_batch_config_parent_record_path(pg):
    messages, error = run_tap(tap_config(pg, "public"), {"public-events": "updated_at"}, None)
    assert error is None
    records = [m for m in messages if m["type"] == "RECORD"]
    assert [r["record"]["id"] for r in records] == list(range(1, 11))
    assert not [m for m in messages if m["type"] == "BATCH"]
    assert last_state(messages)["bookmarks"]["public-events"]["replication_key_value"].startswith("2024-01-01T10:00")


# --------------------------------------------------------------------------- failures


def test_failing_tables_do_not_stop_the_others(pg, tmp_path, caplog):
    selected = {"bad-nan_numeric": None, "bad-inf_ts": None, "bad-multi_dim": None, "bad-fine": None}
    with caplog.at_level(logging.INFO):
        messages, error = run_tap(tap_config(pg, "bad"), selected, tmp_path)
    assert error is not None
    text = str(error)
    assert text.startswith("tables that could not be extracted exactly: ")
    assert "bad.nan_numeric (column amount numeric(5,2): holds NaN, which Arrow decimal128(5, 2)" in text
    assert "bad.inf_ts (column ts timestamp without time zone: holds ±infinity" in text
    assert "bad.multi_dim (column m integer[]: holds a multi-dimensional array)" in text
    assert text.endswith(
        'leave them out with exclude_tables: ["inf_ts", "multi_dim", "nan_numeric"], or fix the values at the source'
    )
    assert "bad.fine" not in text
    assert read_stream(messages, "bad-fine").to_pylist() == [{"id": 1, "v": "ok"}]
    for stream in ("bad-nan_numeric", "bad-inf_ts", "bad-multi_dim"):
        assert not batch_files(messages, stream)
    assert sorted(p.name.split("-")[2] for p in tmp_path.iterdir()) == ["fine"]  # no half-written files
    assert "Could not extract bad.nan_numeric exactly" in caplog.text
    assert PASSWORD not in caplog.text


def test_every_failing_column_of_a_table_is_named_not_only_the_first(pg, tmp_path):
    """bad.many: NaN in a numeric(10,2) (row 1), infinity in ts (row 2), -infinity in d and
    infinity in tstz (row 3): the read stops at the first, one more scan names all four."""
    messages, error = run_tap(tap_config(pg, "bad"), {"bad-many": None, "bad-fine": None}, tmp_path)
    assert error is not None
    detail = str(error).removeprefix("tables that could not be extracted exactly: bad.many (").split(");")[0]
    assert detail.split("; ") == [
        "column amount numeric(10,2): holds NaN, which Arrow decimal128(10, 2) cannot represent",
        "column ts timestamp without time zone: holds ±infinity or a timestamp past Arrow's int64-microsecond range",
        "column d date: holds ±infinity, which Arrow date32 cannot represent",
        "column tstz timestamp with time zone: holds ±infinity or a timestamp past Arrow's int64-microsecond range",
    ]
    assert str(error).endswith('leave them out with exclude_tables: ["many"], or fix the values at the source')
    assert read_stream(messages, "bad-fine").num_rows == 1


def test_with_a_failed_tables_file_the_failures_are_written_and_the_tap_ends_normally(pg, tmp_path):
    report = tmp_path / "report" / "failed.json"
    config = {**tap_config(pg, "bad"), "failed_tables_file": str(report)}
    messages, error = run_tap(config, {"bad-many": None, "bad-fine": None}, tmp_path / "out")
    assert error is None
    written = json.loads(report.read_text())
    assert [t["table"] for t in written["tables"]] == ["bad.many"]
    assert [c["column"] for c in written["tables"][0]["columns"]] == ["amount", "ts", "d", "tstz"]
    assert written["tables"][0]["columns"][0] == {
        "column": "amount",
        "pg_type": "numeric(10,2)",
        "problem": "holds NaN, which Arrow decimal128(10, 2) cannot represent",
    }
    assert not batch_files(messages, "bad-many")
    assert read_stream(messages, "bad-fine").num_rows == 1
    # A run with nothing failing writes an empty report (the caller reads "none", not an old file).
    run_tap(config, {"bad-fine": None}, tmp_path / "out2")
    assert json.loads(report.read_text()) == {"tables": []}


# --------------------------------------------------------------------------- which tables


def discovered(config: dict) -> set[str]:
    return {entry["tap_stream_id"] for entry in TapPostgresArrow(config=config).catalog_dict["streams"]}


def test_discovery_keeps_tables_not_partitions_views_only_when_listed_and_skips_unreadable(pg, caplog):
    config = tap_config(pg, "sel")
    with caplog.at_level(logging.INFO):
        assert discovered(config) == {"sel-t", "sel-plain", "sel-skip_me", "sel-parent", "sel-child"}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "Skipping sel.secret: the role may not SELECT from them (GRANT SELECT to extract them, "
        "or list them in exclude_tables to silence this)"
    ]
    assert "Leaving out partitions (their rows come through their parent): sel.t_p1, sel.t_p2" in caplog.text
    chosen = {**config, "include_views": "v,mv", "exclude_tables": ["skip_me", "secret"]}
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert discovered(chosen) == {"sel-t", "sel-plain", "sel-v", "sel-mv", "sel-parent", "sel-child"}
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]  # an excluded table is not warned of
    assert "Leaving out tables listed in exclude_tables: sel.secret, sel.skip_me" in caplog.text


def test_a_character_column_without_a_length_is_discovered_as_a_string_without_a_warning(pg, db, tmp_path):
    # Postgres names its type `bpchar`, which SQLAlchemy's reflection alone does not know (a SAWarning per
    # column on every discovery). The Northwind source has four such columns.
    db.execute("DROP SCHEMA IF EXISTS unbounded CASCADE; CREATE SCHEMA unbounded")
    db.execute("CREATE TABLE unbounded.codes (code bpchar PRIMARY KEY, note bpchar)")
    db.execute("INSERT INTO unbounded.codes VALUES ('ALFKI', NULL), ('B', 'x')")
    config = tap_config(pg, "unbounded")
    with warnings.catch_warnings():
        warnings.simplefilter("error", sa.exc.SAWarning)
        (entry,) = TapPostgresArrow(config=config).catalog_dict["streams"]
    assert entry["schema"]["properties"] == {"code": {"type": ["string"]}, "note": {"type": ["string", "null"]}}
    messages, error = run_tap(config, {"unbounded-codes": None}, tmp_path)
    assert error is None
    assert read_stream(messages, "unbounded-codes").to_pylist() == [
        {"code": "ALFKI", "note": None},
        {"code": "B", "note": "x"},
    ]


def test_each_row_is_extracted_once(pg, tmp_path):
    """A partitioned table's rows come through it alone; a table others inherit from gives its own rows."""
    selected = {"sel-t": None, "sel-parent": None, "sel-child": None}
    messages, error = run_tap(tap_config(pg, "sel"), selected, tmp_path)
    assert error is None
    assert sorted(read_stream(messages, "sel-t").column("id").to_pylist()) == [1, 2, 3]
    assert read_stream(messages, "sel-parent").column("id").to_pylist() == [1]
    assert sorted(read_stream(messages, "sel-child").column("id").to_pylist()) == [2, 3]


RELATIONS = [
    Relation("s", "t", "p"),
    Relation("s", "t_p1", "r", is_partition=True),
    Relation("s", "sub", "p", is_partition=True),  # a partition that is partitioned itself
    Relation("s", "plain", "r"),
    Relation("s", "v", "v"),
    Relation("s", "mv", "m"),
    Relation("s", "ft", "f"),
    Relation("s", "secret", "r", readable=False),
    Relation("s", "gone", "r"),
]


def test_the_rule_on_a_catalog():
    choice = choose_tables(RELATIONS, include_views=["mv"], exclude_tables=["gone", "missing"])
    assert [r.name for r in choice.extracted] == ["t", "plain", "mv"]
    assert [r.name for r in choice.partitions] == ["t_p1", "sub"]
    assert [r.name for r in choice.views_not_included] == ["v", "ft"]
    assert [r.name for r in choice.unreadable] == ["secret"]
    assert [r.name for r in choice.excluded] == ["gone"]


@pytest.mark.parametrize(
    ("value", "names"),
    [
        (None, []),
        ("", []),
        ("  ", []),
        ("t1,t2", ["t1", "t2"]),
        (" t1 , ,t2 ", ["t1", "t2"]),
        ('["a,b", " c "]', ["a,b", " c "]),
        (["x", "y"], ["x", "y"]),
    ],
)
def test_name_lists_are_read_from_lists_json_or_commas(value, names):
    assert parse_names(value) == names


# --------------------------------------------------------------------------- file names


def test_batch_file_names_fit_whatever_the_table_name(pg, tmp_path):
    """63 '%' signs and 21 CJK characters are 189 bytes once percent-encoded: with the prefix,
    the stream name's schema and the uuid, the batch file name would pass 255 bytes."""
    selected = {f"names-{PERCENT_NAME}": None, f"names-{CJK_NAME}": None}
    messages, error = run_tap(tap_config(pg, "names"), selected, tmp_path, prefix="tap-postgres-")
    assert error is None
    files = [f for stream in selected for f in batch_files(messages, stream)]
    assert len(files) == 2
    assert all(len(f.name.encode()) <= NAME_MAX for f in files), [len(f.name.encode()) for f in files]
    assert read_stream(messages, f"names-{PERCENT_NAME}").column("id").to_pylist() == [1, 2]
    assert read_stream(messages, f"names-{CJK_NAME}").column("id").to_pylist() == [7]
    assert read_stream(messages, f"names-{PERCENT_NAME}").schema.metadata[b"pg_table"].decode() == (
        f"names.{PERCENT_NAME}"
    )


def test_fitted_names_are_short_enough_distinct_and_never_cut_an_escape():
    assert fitted("plain", 10, "plain") == "plain"
    long_a, long_b = "%25" * 70 + "a", "%25" * 70 + "b"
    a, b = fitted(long_a, 100, "a"), fitted(long_b, 100, "b")
    assert a != b and len(a) <= 100 and len(b) <= 100
    head = a.split("%~")[0]
    assert head == "%25" * (len(head) // 3)  # whole escapes only
    stem = batch_stem("tap-postgres-", "public-" + "%" * 63)
    assert len(f"{stem}-{'0' * 32}-{99999:05d}.parquet".encode()) <= NAME_MAX
    with pytest.raises(ValueError, match="prefix"):
        batch_stem("p" * 240, "x")


# --------------------------------------------------------------------------- connection


def test_adbc_uri_percent_encodes_credentials():
    class Params:
        host, port, user, password, database = "db.example", 5433, "us@r", "p@ss w:rd/?#%", "my db"
        options = {"application_name": "tap_postgres", "sslmode": "require"}

    uri = adbc_uri(Params)
    assert uri.startswith("postgresql://us%40r:p%40ss%20w%3Ard%2F%3F%23%25@db.example:5433/my%20db?")
    assert "sslmode=require" in uri
    Params.host = "/var/run/postgresql"
    assert "host=%2Fvar%2Frun%2Fpostgresql" in adbc_uri(Params)


def test_sqlalchemy_url_config(pg, tmp_path):
    url = f"postgresql://tap:{urllib.parse.quote(PASSWORD, safe='')}@127.0.0.1:{pg.port}/tapdb"
    config = {"sqlalchemy_url": url, "filter_schemas": ["public"]}
    messages, error = run_tap(config, {"public-Order Items": None}, tmp_path)
    assert error is None
    assert read_stream(messages, "public-Order Items").num_rows == 2
