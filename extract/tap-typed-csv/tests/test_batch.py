"""BATCH messages: Parquet files typed with the declared Arrow types, and large files read in blocks."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tap_typed_csv.reader import CsvContractError, iter_batches, parse_files
from tap_typed_csv.tap import TapCSV

FIXTURES = Path(__file__).resolve().parent / "fixtures"
ORDER_COLUMNS = {
    "order_id": "integer",
    "product_id": "integer",
    "unit_price": "number",
    "quantity": "integer",
    "discount": "number",
}
TYPED_COLUMNS = {
    "id": "integer",
    "label": "string",
    "price": "decimal(10,2)",
    "amount": "number",
    "day": "date",
    "at": "timestamp",
    "active": "boolean",
}
ROWS = 200_000


def entry(path: Path, columns: dict[str, str], stream: str) -> dict:
    return {"stream": stream, "path": str(path), "key": [next(iter(columns))], "columns": columns}


def data_rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        return [row for row in csv.reader(handle) if row][1:]


def run_batches(config: dict, capsys: pytest.CaptureFixture[str]) -> list[dict]:
    TapCSV(config=config, validate_config=True).sync_all()
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


def file_of(url: str) -> Path:
    parsed = urlparse(url)
    assert parsed.scheme == "file" and parsed.netloc == "", url
    return Path(url2pathname(parsed.path))


@pytest.fixture(scope="module")
def big_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "order_details.csv"
    rng = random.Random(7)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(ORDER_COLUMNS)
        for i in range(ROWS):
            writer.writerow([10_000 + i // 4, i % 77 + 1, round(rng.uniform(1, 300), 2), rng.randint(1, 120), 0.05])
    return path


def test_batch_run_writes_typed_parquet_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "batches"
    config = {
        "files": [
            entry(FIXTURES / "order_details.csv", ORDER_COLUMNS, "order_details"),
            entry(FIXTURES / "typed.csv", TYPED_COLUMNS, "typed"),
        ],
        "batch_config": {"encoding": {"format": "parquet"}, "storage": {"root": root.as_uri(), "prefix": "b-"}},
    }
    messages = run_batches(config, capsys)
    assert not [m for m in messages if m["type"] == "RECORD"]
    batches = [m for m in messages if m["type"] == "BATCH"]
    assert {m["stream"] for m in batches} == {"order_details", "typed"}
    for stream, path, types in (
        ("order_details", FIXTURES / "order_details.csv", ["int64", "int64", "double", "int64", "double"]),
        (
            "typed",
            FIXTURES / "typed.csv",
            ["int64", "string", "decimal128(10, 2)", "double", "date32[day]", "timestamp[us]", "bool"],
        ),
    ):
        files = [file_of(url) for m in batches if m["stream"] == stream for url in m["manifest"]]
        assert all(f.parent == root and f.name.startswith("b-") for f in files)
        tables = [pq.read_table(f) for f in files]
        assert all([str(field.type) for field in t.schema] == types for t in tables)
        assert sum(t.num_rows for t in tables) == len(data_rows(path))
    typed = pq.read_table(file_of(next(m for m in batches if m["stream"] == "typed")["manifest"][0]))
    assert typed.column("label").to_pylist() == [row[1] for row in data_rows(FIXTURES / "typed.csv")]


def test_a_bad_file_in_batch_mode_sends_no_batch_and_leaves_no_file(
    tmp_path: Path, big_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "order_details.csv"
    lines = big_csv.read_text().splitlines()
    lines[150_000] = "1,2,3,lots,0"  # file line 150001
    bad.write_text("\n".join(lines) + "\n")
    root = tmp_path / "batches"
    config = {
        "files": [entry(bad, ORDER_COLUMNS, "order_details")],
        "batch_config": {"encoding": {"format": "parquet"}, "storage": {"root": str(root)}, "batch_size": 10_000},
    }
    with pytest.raises(CsvContractError) as raised:
        run_batches(config, capsys)
    assert str(raised.value) == f"{bad}: line 150001, column 'quantity': 'lots' is not an integer"
    assert '"BATCH"' not in capsys.readouterr().out
    assert not list(root.glob("*.parquet"))


def test_a_repeated_header_deep_in_a_large_file_in_batch_mode_sends_no_batch(
    tmp_path: Path, big_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every column text: the header is found by the vectorised check, in a later block."""
    bad = tmp_path / "order_details.csv"
    lines = big_csv.read_text().splitlines()
    lines.insert(150_000, lines[0])  # file line 150001
    bad.write_text("\n".join(lines) + "\n")
    root = tmp_path / "batches"
    as_text = dict.fromkeys(ORDER_COLUMNS, "string")
    config = {
        "files": [entry(bad, as_text, "order_details")],
        "batch_config": {"encoding": {"format": "parquet"}, "storage": {"root": str(root)}, "batch_size": 10_000},
    }
    with pytest.raises(CsvContractError) as raised:
        run_batches(config, capsys)
    assert str(raised.value) == (
        f"{bad}: line 150001: a repeated header line ({','.join(ORDER_COLUMNS)}), not a data row; "
        "remove it (the header belongs on line 1 only)"
    )
    assert '"BATCH"' not in capsys.readouterr().out
    assert not list(root.glob("*.parquet"))


def test_a_large_file_is_read_in_blocks_with_exact_types(big_csv: Path) -> None:
    spec = parse_files([entry(big_csv, ORDER_COLUMNS, "order_details")])[0]
    batches = list(iter_batches(spec, block_size=1 << 20))
    assert len(batches) > 1
    assert sum(b.num_rows for b in batches) == ROWS == len(data_rows(big_csv))
    assert all(b.schema == spec.arrow_schema for b in batches)
    last = data_rows(big_csv)[-1]
    assert batches[-1].to_pylist()[-1] == {
        "order_id": int(last[0]),
        "product_id": int(last[1]),
        "unit_price": float(last[2]),
        "quantity": int(last[3]),
        "discount": float(last[4]),
    }


def test_a_large_file_in_batch_mode_is_split_by_batch_size(
    tmp_path: Path, big_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "batches"
    config = {
        "files": [entry(big_csv, ORDER_COLUMNS, "order_details")],
        "batch_config": {"encoding": {"format": "parquet"}, "storage": {"root": str(root)}, "batch_size": 75_000},
    }
    batches = [m for m in run_batches(config, capsys) if m["type"] == "BATCH"]
    files = [file_of(url) for m in batches for url in m["manifest"]]
    counts = [pq.ParquetFile(f).metadata.num_rows for f in files]
    assert counts == [75_000, 75_000, 50_000]
    table = pa.concat_tables(pq.read_table(f) for f in files)
    assert table.num_rows == len(data_rows(big_csv))
    assert table.column("quantity").to_pylist() == [int(row[3]) for row in data_rows(big_csv)]


def test_pyarrow_reads_a_few_blocks_ahead_and_the_same_blocks_as_from_the_path(big_csv: Path) -> None:
    """The read-ahead is bounded by the batches taken (pyarrow's own is 32 blocks), and the
    batches are those of pyarrow reading the path itself: same blocks, same rows."""
    import pyarrow.csv as pacsv

    from tap_typed_csv.reader import _PacedFile

    options = pacsv.ReadOptions(column_names=list(ORDER_COLUMNS), skip_rows=1, use_threads=False, block_size=1 << 16)
    from_path = [batch.num_rows for batch in pacsv.open_csv(big_csv, read_options=options)]
    source = _PacedFile(big_csv, ahead=3)
    source.WAIT = 600  # the bound on a wait (for a reader pyarrow dropped) never comes into it here
    reader = pacsv.open_csv(source, read_options=options)
    paced, most_ahead = [], 0
    for batch in reader:
        most_ahead = max(most_ahead, source._reads - len(paced))
        paced.append(batch.num_rows)
        source.taken()
    source.close()
    assert len(from_path) > 40  # a file of many blocks
    assert paced == from_path
    assert most_ahead <= 3
