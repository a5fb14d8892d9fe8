"""tap-parquet-manifest on a few Parquet files and a manifest built here: the SDK's standard tap tests,
then the tap's own promises (constants in BATCH files, verification, relative paths, odd names)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from urllib.parse import quote, urlparse
from urllib.request import url2pathname

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from singer_sdk.testing import SuiteConfig, get_tap_test_class

from tap_parquet_manifest.manifest import ManifestError, VerificationError
from tap_parquet_manifest.tap import TapParquet

DAY = "2024-01-15"
LOAD_ID = "load-0001"

# The inputs. "Order Items" is split over two files; "empty" has no rows.
ORDERS = pa.table(
    {
        "order_id": pa.array([10248, 10249, 10250], pa.int64()),
        "order_date": pa.array([dt.date(1996, 7, 4), dt.date(1996, 7, 5), None], pa.date32()),
        "picture": pa.array([b"\x00\x01", b"", None], pa.binary()),
        "ship_via": pa.array([3, 1, 2], pa.int16()),
    }
)
ORDER_ITEMS = [
    pa.table(
        {
            "item_id": pa.array([1, 2], pa.int64()),
            "order_id": pa.array([10248, 10248], pa.int64()),
            "unit_price": pa.array([14.0, 9.8], pa.float64()),
        }
    ),
    pa.table(
        {
            "item_id": pa.array([3], pa.int64()),
            "order_id": pa.array([10249], pa.int64()),
            "unit_price": pa.array([34.8], pa.float64()),
        }
    ),
]
EMPTY = pa.table({"id": pa.array([], pa.int64())})
INPUTS = {
    "orders": [("orders.parquet", ORDERS)],
    "Order Items": [("order_items/part-1.parquet", ORDER_ITEMS[0]), ("order_items/part-2.parquet", ORDER_ITEMS[1])],
    "empty": [("empty.parquet", EMPTY)],
}
KEYS = {"orders": ["order_id"], "Order Items": ["item_id"], "empty": ["id"]}


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_fixture(root: Path) -> Path:
    """Parquet files under root/data and a manifest at root/manifest.json (relative paths)."""
    streams = []
    for name, files in INPUTS.items():
        entries = []
        for relative, table in files:
            path = root / "data" / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, path)
            entries.append({"path": f"data/{relative}", "rows": table.num_rows, "sha256": sha256_of(path)})
        streams.append({"name": name, "files": entries, "key_properties": KEYS[name]})
    manifest = root / "manifest.json"
    manifest.write_text(
        json.dumps(
            {
                "streams": streams,
                "constant_columns": [{"name": "_load_id", "type": "string", "value": LOAD_ID}],
            }
        )
    )
    return manifest


# The SDK's test class discovers streams at collection time, so the files must exist now.
FIXTURE_MANIFEST = build_fixture(Path(tempfile.mkdtemp(prefix="tap-parquet-test-")))
CONFIG = {
    "manifest_file": str(FIXTURE_MANIFEST),
    "constant_columns": [{"name": "_day", "type": "date", "value": DAY}],
}

TestTapParquet = get_tap_test_class(
    TapParquet, config=CONFIG, suite_config=SuiteConfig(ignore_no_records_for_streams=["empty"])
)


def run(config: dict, capsys: pytest.CaptureFixture[str]) -> list[dict]:
    """Sync with `config`; the Singer messages the tap wrote to stdout."""
    capsys.readouterr()
    TapParquet(config=config, parse_env_config=False).sync_all()
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


@pytest.fixture
def fixture_copy(tmp_path: Path) -> Path:
    """A private copy of the fixture, free to corrupt; returns its manifest."""
    shutil.copytree(FIXTURE_MANIFEST.parent, tmp_path / "fixture")
    return tmp_path / "fixture" / "manifest.json"


def batch_files(messages: list[dict]) -> dict[str, list[Path]]:
    files: dict[str, list[Path]] = {}
    for message in messages:
        if message["type"] == "BATCH":
            assert message["encoding"] == {"format": "parquet", "compression": "none"}
            for uri in message["manifest"]:
                parsed = urlparse(uri)
                assert parsed.scheme == "file"
                files.setdefault(message["stream"], []).append(Path(url2pathname(parsed.path)))
    return files


def test_batch_files_carry_constants_with_their_arrow_types(tmp_path, capsys):
    stamp = "2024-01-15T06:30:00+01:00"
    config = {
        **CONFIG,
        "constant_columns": [
            {"name": "_day", "type": "date", "value": DAY},
            {"name": "_run", "type": "integer", "value": 42},
            {"name": "_started_at", "type": "timestamp", "value": stamp},
        ],
        "batch_config": {
            "encoding": {"format": "parquet", "compression": "none"},
            "storage": {"root": (tmp_path / "batches").as_uri()},
        },
    }
    messages = run(config, capsys)
    assert not [m for m in messages if m["type"] == "RECORD"]
    files = batch_files(messages)
    assert list(files) == list(INPUTS)  # the manifest's order

    expected_types = {
        "_day": pa.date32(),
        "_run": pa.int64(),
        "_started_at": pa.timestamp("us", tz="UTC"),
        "_load_id": pa.string(),  # the manifest's constants come after the config's
    }
    for name, inputs in INPUTS.items():
        tables = [pq.read_table(path) for path in files[name]]
        assert len(tables) == len(inputs)  # one batch per (small) file, one for the empty file too
        source = pa.concat_tables(table for _, table in inputs)
        got = pa.concat_tables(tables)
        assert got.schema.names == source.schema.names + list(expected_types)
        for column, arrow_type in expected_types.items():
            assert got.schema.field(column).type == arrow_type
        assert got.select(source.schema.names).equals(source)
        assert got.num_rows == source.num_rows
        assert set(got["_day"].to_pylist()) <= {dt.date.fromisoformat(DAY)}
        assert set(got["_run"].to_pylist()) <= {42}
        assert set(got["_started_at"].to_pylist()) <= {dt.datetime.fromisoformat(stamp).astimezone(dt.UTC)}
        assert set(got["_load_id"].to_pylist()) <= {LOAD_ID}
    assert pq.read_table(files["empty"][0]).num_rows == 0


def test_order_items_batch_uri_round_trips(tmp_path, capsys):
    root = tmp_path / "batch root with space"
    config = {
        **CONFIG,
        "batch_config": {"encoding": {"format": "parquet"}, "storage": {"root": root.as_uri()}},
    }
    files = batch_files(run(config, capsys))["Order Items"]
    assert len(files) == 2
    for path in files:
        assert path.is_file()
        assert path.parent == root
        assert path.name.startswith(quote("Order Items", safe="") + "-")
    assert pq.read_table(files[0]).num_rows + pq.read_table(files[1]).num_rows == 3


def test_records_carry_constants(capsys):
    messages = run(CONFIG, capsys)
    records = [m["record"] for m in messages if m["type"] == "RECORD" and m["stream"] == "orders"]
    assert [r["order_id"] for r in records] == ORDERS["order_id"].to_pylist()
    assert {(r["_day"], r["_load_id"]) for r in records} == {(DAY, LOAD_ID)}
    assert records[0]["order_date"] == "1996-07-04"
    assert records[0]["picture"] == "0001"
    schema = next(m for m in messages if m["type"] == "SCHEMA" and m["stream"] == "orders")["schema"]
    assert schema["properties"]["ship_via"]["x-sql-datatype"] == "smallint"
    assert schema["properties"]["picture"]["contentEncoding"] == "base16"
    assert schema["properties"]["_day"] == {"type": ["string"], "format": "date"}
    counts = {name: 0 for name in INPUTS}
    for message in messages:
        if message["type"] == "RECORD":
            counts[message["stream"]] += 1
    assert counts == {name: sum(t.num_rows for _, t in files) for name, files in INPUTS.items()}


def refused(manifest: Path, capsys: pytest.CaptureFixture[str], **config) -> str:
    """The tap's refusal message; and nothing was written to stdout."""
    capsys.readouterr()
    with pytest.raises(VerificationError) as refusal:
        TapParquet(config={**CONFIG, "manifest_file": str(manifest), **config}, parse_env_config=False).sync_all()
    assert capsys.readouterr().out == ""
    return str(refusal.value)


# The last file of the second stream: the first stream would already be out if checks were lazy.
VICTIM = "data/order_items/part-2.parquet"


def test_verification_refuses_a_truncated_file(fixture_copy, capsys):
    victim = fixture_copy.parent / VICTIM
    victim.write_bytes(victim.read_bytes()[:-20])
    message = refused(fixture_copy, capsys)
    assert f"checksum mismatch: {victim} is not the file the manifest describes" in message


def test_verification_refuses_a_bit_flipped_file(fixture_copy, capsys):
    victim = fixture_copy.parent / VICTIM
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    message = refused(fixture_copy, capsys)
    assert f"checksum mismatch: {victim} is not the file the manifest describes" in message


def test_verification_refuses_a_wrong_row_count(fixture_copy, capsys):
    manifest = json.loads(fixture_copy.read_text())
    entry = manifest["streams"][1]["files"][1]
    entry["rows"] += 1
    fixture_copy.write_text(json.dumps(manifest))
    victim = fixture_copy.parent / VICTIM
    message = refused(fixture_copy, capsys)
    actual = ORDER_ITEMS[1].num_rows
    assert f"row count mismatch: {victim} has {actual} rows, the manifest says {actual + 1}" in message


def test_verification_refuses_a_missing_file(fixture_copy, capsys):
    victim = fixture_copy.parent / VICTIM
    victim.unlink()
    assert f"missing file: {victim} does not exist" in refused(fixture_copy, capsys)


def test_unreadable_file_is_refused_even_without_verify(fixture_copy, capsys):
    victim = fixture_copy.parent / VICTIM
    victim.write_bytes(victim.read_bytes()[:-20])
    assert f"unreadable file: {victim}" in refused(fixture_copy, capsys, verify=False)


def test_verify_false_skips_checksums(fixture_copy, capsys):
    manifest = json.loads(fixture_copy.read_text())
    manifest["streams"][0]["files"][0]["sha256"] = "0" * 64
    fixture_copy.write_text(json.dumps(manifest))
    assert "checksum mismatch" in refused(fixture_copy, capsys)
    messages = run({**CONFIG, "manifest_file": str(fixture_copy), "verify": False}, capsys)
    assert sum(m["type"] == "RECORD" and m["stream"] == "orders" for m in messages) == ORDERS.num_rows


def test_relative_paths_resolve_against_the_manifest_dir(tmp_path, monkeypatch, capsys):
    data = tmp_path / "shared" / "orders.parquet"
    data.parent.mkdir()
    pq.write_table(ORDERS, data)
    manifest = tmp_path / "manifests" / "today" / "manifest.json"
    manifest.parent.mkdir(parents=True)
    entry = {"path": "../../shared/orders.parquet", "rows": ORDERS.num_rows, "sha256": sha256_of(data)}
    manifest.write_text(json.dumps({"streams": [{"name": "orders", "files": [entry]}]}))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    tap = TapParquet(config={"manifest_file": str(manifest)}, parse_env_config=False)
    assert tap.manifest.streams[0].files[0].path == str(data.resolve())
    messages = run({"manifest_file": str(manifest)}, capsys)
    assert sum(m["type"] == "RECORD" for m in messages) == ORDERS.num_rows


def test_a_constant_given_twice_names_both_places(capsys):
    config = {**CONFIG, "constant_columns": [{"name": "_load_id", "type": "string", "value": "x"}]}
    with pytest.raises(ManifestError) as refusal:
        TapParquet(config=config, parse_env_config=False).sync_all()
    message = str(refusal.value)
    assert "'_load_id' is given twice" in message
    assert "config constant_columns" in message
    assert f"manifest {FIXTURE_MANIFEST.resolve()} constant_columns" in message
    assert capsys.readouterr().out == ""


def test_a_constant_clashing_with_a_column_names_the_file(capsys):
    config = {**CONFIG, "constant_columns": [{"name": "order_id", "type": "integer", "value": 1}]}
    message = refused(FIXTURE_MANIFEST, capsys, **config)
    assert "constant column 'order_id' (config constant_columns) clashes with a column of" in message
    assert str(FIXTURE_MANIFEST.parent.resolve() / "data" / "orders.parquet") in message


PLUGIN_DIR = Path(__file__).resolve().parent.parent


def test_example_manifest_verifies(capsys):
    manifest = PLUGIN_DIR / "examples" / "manifest.json"
    messages = run({"manifest_file": str(manifest)}, capsys)
    records = [m["record"] for m in messages if m["type"] == "RECORD"]
    assert [r["order_id"] for r in records] == [10248, 10249, 10250]
    assert {r["_load_id"] for r in records} == {"example-load"}


def test_meltano_yml_declares_every_setting():
    import yaml

    project = yaml.safe_load((PLUGIN_DIR / "meltano.yml").read_text())
    (extractor,) = project["plugins"]["extractors"]
    declared = {setting["name"] for setting in extractor["settings"]}
    assert declared == {"manifest_file", "constant_columns", "verify", "batch_config", "storage_options"}
    assert declared - {"batch_config"} <= set(TapParquet.config_jsonschema["properties"])
    assert extractor["pip_url"] == "-e ."


def test_without_constants_each_verified_file_is_handed_over_as_a_link(fixture_copy, tmp_path, capsys):
    manifest = json.loads(fixture_copy.read_text())
    manifest["constant_columns"] = []
    fixture_copy.write_text(json.dumps(manifest))
    root = tmp_path / "batches"
    config = {
        "manifest_file": str(fixture_copy),
        "batch_config": {"encoding": {"format": "parquet"}, "storage": {"root": root.as_uri()}},
    }
    files = batch_files(run(config, capsys))
    for name, inputs in INPUTS.items():
        originals = [fixture_copy.parent / "data" / relative for relative, _ in inputs]
        assert [path.stat().st_ino for path in files[name]] == [path.stat().st_ino for path in originals]
        for path, (_, table) in zip(files[name], inputs, strict=True):
            assert pq.read_table(path).equals(table)
    # A target that deletes its batch files leaves the manifest's files in place.
    for paths in files.values():
        for path in paths:
            path.unlink()
    assert all(
        (fixture_copy.parent / "data" / relative).is_file() for inputs in INPUTS.values() for relative, _ in inputs
    )


def test_files_named_by_url_are_read_through_fsspec(fixture_copy, tmp_path, capsys):
    """A manifest naming object-store URLs (here fsspec's in-memory store, as s3:// would be):
    verified, then downloaded as the batch files; a missing object is refused by its URL."""
    import fsspec

    memory = fsspec.filesystem("memory")
    manifest = json.loads(fixture_copy.read_text())
    manifest["constant_columns"] = []
    for stream in manifest["streams"]:
        for entry in stream["files"]:
            url = f"memory://lake/{tmp_path.name}/{entry['path']}"
            memory.pipe(url, (fixture_copy.parent / entry["path"]).read_bytes())
            entry["path"] = url
    fixture_copy.write_text(json.dumps(manifest))
    root = tmp_path / "batches"
    config = {
        "manifest_file": str(fixture_copy),
        "batch_config": {"encoding": {"format": "parquet"}, "storage": {"root": root.as_uri()}},
        "storage_options": {"unused_empty_option": ""},
    }
    files = batch_files(run(config, capsys))
    for name, inputs in INPUTS.items():
        for path, (_, table) in zip(files[name], inputs, strict=True):
            assert pq.read_table(path).equals(table)
    victim = manifest["streams"][0]["files"][0]["path"]
    memory.rm(victim)
    assert f"missing file: {victim} does not exist" in refused(fixture_copy, capsys)
