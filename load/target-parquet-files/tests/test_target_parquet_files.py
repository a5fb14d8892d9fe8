"""What target-parquet-files writes: typed columns, empty tables, BATCH files, and only in output_dir."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from target_parquet_files.naming import (
    HASH_MARK,
    LONGEST_AROUND_FINAL,
    MAX_FILE_NAME_BYTES,
    MAX_STEM_BYTES,
    NAME_MAX,
    InvalidStreamNameError,
    file_name,
    file_stem,
    output_path,
    table_name,
)
from target_parquet_files.target import TargetParquet

PROPERTIES = {
    "id": {"type": ["integer"]},
    "price": {"type": ["number", "null"]},
    "day": {"type": ["string", "null"], "format": "date"},
    "at": {"type": ["string", "null"], "format": "date-time"},
    "blob": {"type": ["string", "null"], "contentEncoding": "base16"},
    "flag": {"type": ["boolean", "null"]},
    "tags": {"type": ["array", "null"], "items": {"type": "string"}},
    "name": {"type": ["string", "null"]},
}


def schema_message(stream: str, properties: dict[str, Any] = PROPERTIES) -> dict[str, Any]:
    return {
        "type": "SCHEMA",
        "stream": stream,
        "key_properties": ["id"],
        "schema": {"type": "object", "required": ["id"], "properties": properties},
    }


def record(stream: str, **values: Any) -> dict[str, Any]:
    return {"type": "RECORD", "stream": stream, "record": values}


def batch(stream: str, *urls: str) -> dict[str, Any]:
    return {
        "type": "BATCH",
        "stream": stream,
        "encoding": {"format": "parquet", "compression": "none"},
        "manifest": list(urls),
    }


def run(config: dict[str, Any], *messages: dict[str, Any]) -> None:
    lines = "".join(json.dumps(m) + "\n" for m in messages)
    TargetParquet(config=config, validate_config=True).listen(io.StringIO(lines))


def write_batch_file(path: Path, rows: dict[str, list[Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(rows), path)
    return path


def leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return tmp_path / "not" / "yet" / "there"


def test_records_become_one_typed_file_per_stream(out: Path) -> None:
    rows = [
        {
            "id": 1,
            "price": 9.8,
            "day": "1996-07-04",
            "at": "1996-07-04T12:30:00+00:00",
            "blob": "00ff",
            "flag": True,
            "tags": ["a", "b"],
            "name": "a",
        },
        {"id": 2, "price": None, "day": None, "at": None, "blob": None, "flag": None, "tags": None, "name": None},
    ]
    prefix = "public-"
    run(
        {"output_dir": str(out), "stream_prefix_to_strip": prefix},
        schema_message(prefix + "things"),
        *(record(prefix + "things", **row) for row in rows),
    )
    table = pq.read_table(out / file_name("things"))
    assert table.schema.names == list(PROPERTIES)
    assert table.schema.field("id").type == pa.int64()
    assert table.schema.field("price").type == pa.float64()
    assert table.schema.field("day").type == pa.date32()
    assert table.schema.field("at").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("blob").type == pa.binary()
    assert table.schema.field("flag").type == pa.bool_()
    assert table.schema.field("tags").type == pa.string()
    assert table.column("id").to_pylist() == [row["id"] for row in rows]
    assert table.column("price").to_pylist() == [row["price"] for row in rows]
    assert table.column("blob").to_pylist() == [bytes.fromhex(rows[0]["blob"]), None]
    assert [json.loads(v) if v else v for v in table.column("tags").to_pylist()] == [row["tags"] for row in rows]
    assert table.column("day").to_pylist()[0].isoformat() == rows[0]["day"]
    assert sorted(p.name for p in out.iterdir()) == [file_name("things")]


def test_empty_stream_still_gets_a_file_with_its_schema(out: Path) -> None:
    run({"output_dir": str(out)}, schema_message("empty"))
    table = pq.read_table(out / file_name("empty"))
    assert table.num_rows == 0
    assert table.schema.names == list(PROPERTIES)
    assert table.schema.field("blob").type == pa.binary()


def test_parquet_batch_file_is_appended_whole_and_deleted(out: Path, tmp_path: Path) -> None:
    rows = {
        "id": [1, 2, 3],
        "price": [1.5, 2.5, None],
        "day": ["2024-01-01", None, "2024-01-03"],
        "blob": ["", "0a", None],
        "name": ["x", "y", "z"],
    }
    source = write_batch_file(tmp_path / "batches" / "things-1.parquet", rows)
    run({"output_dir": str(out)}, schema_message("things"), batch("things", source.as_uri()))
    table = pq.read_table(out / file_name("things"))
    assert table.num_rows == len(rows["id"])
    assert table.column("id").to_pylist() == rows["id"]
    assert table.column("blob").to_pylist() == [bytes.fromhex(v) if v is not None else None for v in rows["blob"]]
    assert table.column("flag").null_count == len(rows["id"]), "columns absent from the batch file are null"
    assert not source.exists(), "consumed batch files are removed"


def test_batch_and_records_share_one_file(out: Path, tmp_path: Path) -> None:
    source = write_batch_file(tmp_path / "b.parquet", {"id": [10, 11]})
    run(
        {"output_dir": str(out)},
        schema_message("things"),
        record("things", id=1),
        batch("things", source.as_uri()),
    )
    assert sorted(pq.read_table(out / file_name("things")).column("id").to_pylist()) == [1, 10, 11]


def test_stream_with_space_via_percent_encoded_batch_uri(out: Path, tmp_path: Path) -> None:
    stream = "Order Items"
    source = write_batch_file(tmp_path / "tap batches" / f"{stream}-0001.parquet", {"id": [7, 8]})
    uri = source.as_uri()
    assert "%20" in uri, "the manifest entry really is percent-encoded"
    run({"output_dir": str(out)}, schema_message(stream), batch(stream, uri))
    path = out / (file_stem(stream) + ".parquet")
    assert path.name == file_name(stream)
    assert pq.read_table(path).column("id").to_pylist() == [7, 8]
    assert not source.exists()


def test_traversal_stream_name_stays_inside_output_dir(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b" / "out"
    stream = "../../fc_escape"
    run({"output_dir": str(out)}, schema_message(stream), record(stream, id=1))
    expected = out / (file_stem(stream) + ".parquet")
    assert "/" not in expected.name and expected.parent == out
    assert pq.read_table(expected).column("id").to_pylist() == [1]
    assert [p.name for p in out.iterdir()] == [expected.name]
    for parent in (out.parent, out.parent.parent, tmp_path):
        assert sorted(p.name for p in parent.iterdir()) == [next(iter(out.relative_to(parent).parts))]
    assert [p for p in tmp_path.rglob("*fc_escape*")] == [expected]


def test_no_tmp_file_remains_after_success(out: Path) -> None:
    run(
        {"output_dir": str(out)},
        schema_message("one"),
        record("one", id=1),
        schema_message("two"),
    )
    assert leftovers(out) == []
    assert sorted(p.name for p in out.iterdir()) == sorted(file_name(s) for s in ("one", "two"))


def test_failure_raises_and_leaves_no_tmp_and_no_final_file(out: Path) -> None:
    with pytest.raises(Exception, match="unknown"):
        run({"output_dir": str(out)}, schema_message("one"), record("one", id=1), record("unknown", id=2))
    assert not (out / file_name("one")).exists()
    assert leftovers(out.parent.parent) == []


def test_schema_change_mid_run_merges_into_one_file(out: Path) -> None:
    narrow = {"id": {"type": ["integer"]}}
    wide = {"id": {"type": ["integer"]}, "extra": {"type": ["string", "null"]}}
    run(
        {"output_dir": str(out)},
        schema_message("things", narrow),
        record("things", id=1),
        schema_message("things", wide),
        record("things", id=2, extra="x"),
    )
    table = pq.read_table(out / file_name("things"))
    assert sorted(table.column("id").to_pylist()) == [1, 2]
    assert set(table.schema.names) == set(wide)
    assert leftovers(out) == []


def test_rerun_replaces_the_file_instead_of_merging(out: Path) -> None:
    for ids in ([1, 2, 3], [4]):
        run({"output_dir": str(out)}, schema_message("things"), *(record("things", id=i) for i in ids))
    assert pq.read_table(out / file_name("things")).column("id").to_pylist() == [4]


def test_compression_setting_is_used(out: Path) -> None:
    run({"output_dir": str(out), "compression": "snappy"}, schema_message("things"), record("things", id=1))
    metadata = pq.ParquetFile(out / file_name("things")).metadata
    assert metadata.row_group(0).column(0).compression == "SNAPPY"


@pytest.mark.parametrize(
    "name",
    ["order_details", "Order Items", "../../fc_escape", ".hidden", "..", "a/b\\c", "50%", "é😀", "public-x"],
)
def test_naming_round_trip(name: str) -> None:
    stem = file_stem(name)
    assert table_name(stem) == name
    assert "/" not in stem and "\\" not in stem and not stem.startswith(".")
    assert file_name(name) == stem + ".parquet"


def test_plain_names_are_unchanged() -> None:
    for name in ("order_details", "orders", "Employee-Territories.v2"):
        assert file_stem(name) == name


def test_bad_names_are_refused_naming_the_stream(tmp_path: Path) -> None:
    with pytest.raises(InvalidStreamNameError):
        file_name("")
    # A name whose prefix is all there is leaves an empty table name.
    with pytest.raises(InvalidStreamNameError, match="public-"):
        run({"output_dir": str(tmp_path), "stream_prefix_to_strip": "public-"}, schema_message("public-"))
    assert list(tmp_path.iterdir()) == []


def test_names_too_long_to_encode_whole_get_a_short_distinct_stem_and_their_file(out: Path) -> None:
    """A name is never refused for its length: its stem is shortened with a hash of the name, so
    every name the target writes (final, temporary, merged) stays within NAME_MAX bytes."""
    fits = "x" * (MAX_FILE_NAME_BYTES - len(".parquet"))
    assert len(file_name(fits).encode()) == MAX_FILE_NAME_BYTES and file_stem(fits) == fits
    too_long = fits + "x"
    percents, cjk = "%" * 63, "東京都渋谷区神宮前一丁目二番三号四五六七八" * 3
    stems = {name: file_stem(name) for name in (too_long, too_long + "y", percents * 2, percents * 2 + "%", cjk)}
    assert len(set(stems.values())) == len(stems)  # distinct names, distinct files
    for name, stem in stems.items():
        assert len(stem.encode()) <= MAX_STEM_BYTES and HASH_MARK in stem, name
        assert "/" not in stem and not stem.startswith(".")
        assert "%" not in stem.split(HASH_MARK)[0][-2:], stem  # no escape cut in half
    assert file_stem(percents) == "%25" * 63  # 189 bytes: whole, and reversible
    assert table_name(file_stem(percents)) == percents
    # Through the target: one file per stream, named as above, every row in it.
    run(
        {"output_dir": str(out)},
        schema_message(cjk),
        record(cjk, id=1),
        schema_message(too_long),
        record(too_long, id=2),
    )
    assert sorted(p.name for p in out.iterdir()) == sorted([file_name(cjk), file_name(too_long)])
    assert pq.read_table(out / file_name(cjk)).column("id").to_pylist() == [1]
    assert all(len(p.name.encode()) + LONGEST_AROUND_FINAL <= NAME_MAX for p in out.iterdir())


def test_output_path_is_directly_inside_the_folder(tmp_path: Path) -> None:
    for name in ("../x", "..", ".", "/etc/passwd", "a/../../b"):
        path = output_path(tmp_path, name)
        assert path.resolve().parent == tmp_path.resolve()


def test_typed_batch_files_are_written_as_they_are(out: Path, tmp_path: Path) -> None:
    """Exact Arrow types and field metadata survive: no round trip through the JSON Schema."""
    from decimal import Decimal

    price = pa.field("price", pa.decimal128(20, 6), metadata={"pg_type": "numeric(20,6)"})
    schema = pa.schema(
        [
            pa.field("id", pa.int16()),
            price,
            pa.field("tags", pa.list_(pa.string())),
            pa.field("day", pa.string()),  # text the stream declares as a date: parsed
            # Text the file describes: kept, although the stream declares a number.
            pa.field("amount", pa.string(), metadata={"pg_type": "numeric"}),
        ]
    )
    values = [Decimal("12345678901234.123456"), None]
    first = tmp_path / "b1.parquet"
    second = tmp_path / "b2.parquet"
    pq.write_table(
        pa.table(
            {
                "id": [1, 2],
                "price": values,
                "tags": [["a", None], []],
                "day": ["2024-01-01", None],
                "amount": ["123456789012345678901234567890.000000000001", None],
            },
            schema,
        ),
        first,
    )
    pq.write_table(
        pa.table({"id": [3], "price": [Decimal("-0.000001")], "tags": [None], "day": [None], "amount": ["1"]}, schema),
        second,
    )
    run(
        {"output_dir": str(out)},
        schema_message("things", PROPERTIES | {"amount": {"type": ["number", "null"]}}),
        batch("things", first.as_uri()),
        batch("things", second.as_uri()),
    )
    written = pq.read_table(out / "things.parquet")
    assert written.schema.field("price").type == pa.decimal128(20, 6)
    assert written.schema.field("price").metadata == {b"pg_type": b"numeric(20,6)"}
    assert written.schema.field("id").type == pa.int16()
    assert written.schema.field("day").type == pa.date32()
    assert written.column("price").to_pylist() == [*values, Decimal("-0.000001")]
    assert written.column("tags").to_pylist() == [["a", None], [], None]
    assert written.column("amount").to_pylist() == ["123456789012345678901234567890.000000000001", None, "1"]
    # Declared columns the batch lacks come as nulls of the declared type.
    assert written.column("name").null_count == 3


ID_ONLY = {"id": {"type": ["integer"]}}


def test_a_batch_file_already_in_the_targets_form_becomes_the_output_file(out: Path, tmp_path: Path) -> None:
    source = tmp_path / "b.parquet"
    pq.write_table(pa.table({"id": pa.array([1, 2], pa.int64())}), source, compression="zstd")
    inode = source.stat().st_ino
    run({"output_dir": str(out)}, schema_message("things", ID_ONLY), batch("things", source.as_uri()))
    output = out / file_name("things")
    assert output.stat().st_ino == inode, "renamed, not rewritten"
    assert pq.read_table(output).column("id").to_pylist() == [1, 2]
    assert not source.exists() and not leftovers(out)


@pytest.mark.parametrize("then", ["batch", "records"])
def test_rows_after_a_file_taken_as_is_are_appended_to_it(out: Path, tmp_path: Path, then: str) -> None:
    first = tmp_path / "first.parquet"
    pq.write_table(pa.table({"id": pa.array([1, 2], pa.int64())}), first, compression="zstd")
    more = [batch("things", write_batch_file(tmp_path / "second.parquet", {"id": [3]}).as_uri())]
    if then == "records":
        more = [record("things", id=3), record("things", id=4)]
    run({"output_dir": str(out)}, schema_message("things", ID_ONLY), batch("things", first.as_uri()), *more)
    expected = [1, 2, 3] if then == "batch" else [1, 2, 3, 4]
    assert pq.read_table(out / file_name("things")).column("id").to_pylist() == expected
    assert not leftovers(out) and not [p for p in out.iterdir() if p.name.endswith(".first")]


def test_a_batch_file_with_another_codec_is_rewritten_with_the_configured_one(out: Path, tmp_path: Path) -> None:
    source = tmp_path / "b.parquet"
    pq.write_table(pa.table({"id": pa.array([5], pa.int64())}), source, compression="snappy")
    run({"output_dir": str(out)}, schema_message("things", ID_ONLY), batch("things", source.as_uri()))
    metadata = pq.read_metadata(out / file_name("things"))
    assert metadata.row_group(0).column(0).compression == "ZSTD"
    assert pq.read_table(out / file_name("things")).column("id").to_pylist() == [5]


def test_merging_after_a_schema_change_never_writes_into_a_file_taken_as_is(out: Path, tmp_path: Path) -> None:
    # The second part arrives as a hard link to a file that must not change (tap-parquet-manifest's hand-off).
    original = tmp_path / "published.parquet"
    pq.write_table(pa.table({"id": pa.array([2], pa.int64()), "extra": ["x"]}), original, compression="zstd")
    before = original.read_bytes()
    link = tmp_path / "batches" / "things-1.parquet"
    link.parent.mkdir()
    os.link(original, link)
    wide = {"id": {"type": ["integer"]}, "extra": {"type": ["string", "null"]}}
    run(
        {"output_dir": str(out)},
        schema_message("things", ID_ONLY),
        record("things", id=1),
        schema_message("things", wide),
        batch("things", link.as_uri()),
    )
    assert sorted(pq.read_table(out / file_name("things")).column("id").to_pylist()) == [1, 2]
    assert original.read_bytes() == before
    assert not leftovers(out)
