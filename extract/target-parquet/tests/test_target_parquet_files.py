"""What target-parquet writes: typed columns, empty tables, BATCH files, and only in staging."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from target_parquet.target import TargetParquet


def singer(*messages: dict) -> io.StringIO:
    return io.StringIO("".join(json.dumps(m) + "\n" for m in messages))


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NW_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("RUN_DATE", "2024-01-15")
    return tmp_path


SCHEMA = {
    "type": "SCHEMA",
    "stream": "public-things",
    "key_properties": ["id"],
    "schema": {
        "type": "object",
        "required": ["id"],
        "properties": {
            "id": {"type": ["integer"]},
            "price": {"type": ["number", "null"]},
            "day": {"type": ["string", "null"], "format": "date"},
            "blob": {"type": ["string", "null"], "contentEncoding": "base16"},
            "name": {"type": ["string", "null"]},
        },
    },
}


def test_records_become_one_typed_file_in_staging(data_dir: Path) -> None:
    target = TargetParquet(config={"step": "extract-postgres"})
    target.listen(
        singer(
            SCHEMA,
            {
                "type": "RECORD",
                "stream": "public-things",
                "record": {"id": 1, "price": 9.8, "day": "1996-07-04", "blob": "00ff", "name": "a"},
            },
            {
                "type": "RECORD",
                "stream": "public-things",
                "record": {"id": 2, "price": None, "day": None, "blob": None, "name": None},
            },
            {**SCHEMA, "stream": "public-empty"},
        )
    )
    staging = data_dir / ".staging" / "extract-postgres" / "2024-01-15"
    table = pq.read_table(staging / "things.parquet")
    assert table.schema.field("day").type == pa.date32()
    assert table.schema.field("blob").type == pa.binary()
    assert table.column("price").to_pylist() == [9.8, None]
    assert table.column("blob").to_pylist() == [b"\x00\xff", None]
    empty = pq.read_table(staging / "empty.parquet")
    assert empty.num_rows == 0 and empty.schema.names == table.schema.names
    marker = json.loads((staging / "_staged.json").read_text())
    assert marker["tables"] == {"empty": 0, "things": 2}
    assert not (data_dir / "postgres").exists(), "the target never writes outside staging"


def test_parquet_batch_files_are_appended_whole(data_dir: Path, tmp_path: Path) -> None:
    batch = tmp_path / "batch-1.parquet"
    pq.write_table(
        pa.table(
            {
                "id": [1, 2, 3],
                "price": [1.5, 2.5, None],
                "day": ["2024-01-01", None, "2024-01-03"],
                "blob": ["", "0a", None],
                "name": ["x", "y", "z"],
            }
        ),
        batch,
    )
    target = TargetParquet(config={"step": "extract-postgres"})
    target.listen(
        singer(
            SCHEMA,
            {
                "type": "BATCH",
                "stream": "public-things",
                "encoding": {"format": "parquet", "compression": "none"},
                "manifest": [f"file://{batch}"],
            },
        )
    )
    table = pq.read_table(data_dir / ".staging" / "extract-postgres" / "2024-01-15" / "things.parquet")
    assert table.num_rows == 3
    assert table.column("blob").to_pylist() == [b"", b"\n", None]
    assert not batch.exists(), "consumed batch files are removed"
