"""The Singer SDK's built-in tap tests, plus the CSV contract's rejections."""

from __future__ import annotations

from pathlib import Path

import pytest
from singer_sdk.testing import get_tap_test_class

from tap_csv.reader import CsvContractError, read_order_details
from tap_csv.tap import TapCSV

SOURCE_CSV = Path(__file__).resolve().parents[3] / "data" / "order_details.csv"

TestTapCSV = get_tap_test_class(TapCSV, config={"file_path": str(SOURCE_CSV)})

HEADER = "order_id,product_id,unit_price,quantity,discount"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (f"{HEADER},extra\n1,2,3,4,5,6\n", "line 1 (header): unexpected column(s) ['extra']"),
        ("order_id,product_id,unit_price,quantity\n1,2,3,4\n", "line 1 (header): missing column(s) ['discount']"),
        (f"{HEADER}\n1,2,3,4,0\n1,3,3,x,0\n", "line 3, column 'quantity': 'x' is not an integer"),
        (f"{HEADER}\n1,2,abc,4,0\n", "line 2, column 'unit_price': 'abc' is not a number"),
        (f"{HEADER}\n1,2,3,4,0,9\n", "line 2: Expected 5 columns, got 6"),
        (f"{HEADER}\n1,2,3,,0\n", "line 2, column 'quantity': empty value"),
        ("", "the file is empty"),
        (f"{HEADER}\n", "only a header line, no data rows"),
    ],
)
def test_contract_violations_name_file_line_and_column(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "order_details.csv"
    path.write_text(content)
    with pytest.raises(CsvContractError) as raised:
        read_order_details(path)
    assert str(raised.value) == f"{path}: {message}" or str(raised.value).startswith(f"{path}: {message}")


def test_whole_source_file_is_read_with_declared_types() -> None:
    table = read_order_details(SOURCE_CSV)
    assert table.num_rows == sum(1 for _ in SOURCE_CSV.open()) - 1
    assert [str(f.type) for f in table.schema] == ["int64", "int64", "double", "int64", "double"]
