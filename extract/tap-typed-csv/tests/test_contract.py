"""The CSV contract: every refusal names file, line and column; accepted files give the declared types."""

from __future__ import annotations

import csv
import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from tap_typed_csv.reader import CsvConfigError, CsvContractError, FileSpec, parse_files, read_table
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
PEOPLE_COLUMNS = {"given_name": "string", "family_name": "string", "date_of_birth": "date", "place_of_birth": "string"}
PLACES_COLUMNS = {"city": "string", "county": "string", "country": "string"}
HEADER = "order_id,product_id,unit_price,quantity,discount"
TYPED_HEADER = ",".join(TYPED_COLUMNS)


def entry(path: Path, columns: dict[str, str], stream: str = "s", key: list[str] | None = None) -> dict[str, Any]:
    return {"stream": stream, "path": str(path), "key": key or [next(iter(columns))], "columns": columns}


def spec(path: Path, columns: dict[str, str] = ORDER_COLUMNS) -> FileSpec:
    return parse_files([entry(path, columns)])[0]


def csv_rows(path: Path) -> list[list[str]]:
    """The file's data rows as the csv module reads them (the expected values)."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        return [row for row in csv.reader(handle) if row][1:]


def run_tap(config: dict, capsys: pytest.CaptureFixture[str]) -> list[dict]:
    TapCSV(config=config, validate_config=True).sync_all()
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


# -- refusals: today's messages, exactly -------------------------------------------------

ORDER_CASES = {
    # today's tap-typed-csv tests
    "extra column": (
        f"{HEADER},extra\n1,2,3,4,5,6\n",
        f"line 1 (header): unexpected column(s) ['extra']; expected {HEADER}",
    ),
    "missing column": (
        "order_id,product_id,unit_price,quantity\n1,2,3,4\n",
        f"line 1 (header): missing column(s) ['discount']; expected {HEADER}",
    ),
    "bad integer": (f"{HEADER}\n1,2,3,4,0\n1,3,3,x,0\n", "line 3, column 'quantity': 'x' is not an integer"),
    "bad number": (f"{HEADER}\n1,2,abc,4,0\n", "line 2, column 'unit_price': 'abc' is not a number"),
    "long row": (f"{HEADER}\n1,2,3,4,0,9\n", "line 2: Expected 5 columns, got 6"),
    "empty value": (f"{HEADER}\n1,2,3,,0\n", "line 2, column 'quantity': empty value"),
    "empty file": ("", f"the file is empty; expected a header line {HEADER} and data rows"),
    "only a header": (f"{HEADER}\n", "only a header line, no data rows"),
    # tests/test_faults.py BAD_CSVS
    "faults: extra column": (
        f"{HEADER},note\n10248,11,14,12,0,x\n",
        f"line 1 (header): unexpected column(s) ['note']; expected {HEADER}",
    ),
    "faults: missing column": (
        "order_id,product_id,unit_price,quantity\n10248,11,14,12\n",
        f"line 1 (header): missing column(s) ['discount']; expected {HEADER}",
    ),
    "faults: non-numeric quantity": (
        f"{HEADER}\n10248,11,14,12,0\n10248,42,9.8,ten,0\n",
        "line 3, column 'quantity': 'ten' is not an integer",
    ),
    "faults: invalid UTF-8": (
        f"{HEADER}\n10248,11,14,12,0\n10248,42,9.8,1\udcff0,0\n",
        "line 3: invalid UTF-8 byte(s) b'\\xff'; save the file as UTF-8",
    ),
    "faults: short row": (f"{HEADER}\n10248,11,14,12,0\n10248,42,9.8\n", "line 3: Expected 5 columns, got 3"),
    # more
    "wrong order": (
        "product_id,order_id,unit_price,quantity,discount\n1,2,3,4,0\n",
        "line 1 (header): columns in the wrong order "
        f"['product_id', 'order_id', 'unit_price', 'quantity', 'discount']; expected {HEADER}",
    ),
    "missing and unexpected": (
        "order_id,product_id,price,quantity,discount\n1,2,3,4,0\n",
        f"line 1 (header): missing column(s) ['unit_price']; unexpected column(s) ['price']; expected {HEADER}",
    ),
    "only a header, no newline": (HEADER, "only a header line, no data rows"),
    "comma inside a quoted number": (
        f'{HEADER}\n10248,11,"1,4",12,0\n',
        "line 2, column 'unit_price': '1,4' is not a number",
    ),
    "quoted empty number": (f'{HEADER}\n1,2,3,4,""\n', "line 2, column 'discount': empty value"),
    "not a finite number": (
        f"{HEADER}\n1,2,3,4,0\n1,2,nan,4,0\n",
        "line 3, column 'unit_price': 'nan' is not a number",
    ),
    "after blank lines": (f"{HEADER}\n1,2,3,4,0\n\n\n1,2,3,y,0\n", "line 5, column 'quantity': 'y' is not an integer"),
    "empty after blank line": (f"{HEADER}\n\n1,2,,4,0\n", "line 3, column 'unit_price': empty value"),
    "short row after blank line": (f"{HEADER}\n1,2,3,4,0\n\n1,2\n", "line 4: Expected 5 columns, got 2"),
    "CRLF line numbers": (
        f"{HEADER}\r\n1,2,3,4,0\r\n1,2,3,4.5,0\r\n",
        "line 3, column 'quantity': '4.5' is not an integer",
    ),
    "integer out of range": (
        f"{HEADER}\n1,2,3,99999999999999999999,0\n",
        "line 2, column 'quantity': '99999999999999999999' is not an integer",
    ),
    # An integer column cannot hold its own name: the conversion error says it is the header again.
    "repeated header": (
        f"{HEADER}\n1,2,3,4,0\n{HEADER}\n1,2,3,4,0\n",
        f"line 3: a repeated header line ({HEADER}), not a data row; remove it (the header belongs on line 1 only)",
    ),
    "header again as the last line, after a blank line": (
        f"{HEADER}\n1,2,3,4,0\n\n{HEADER}",
        f"line 4: a repeated header line ({HEADER}), not a data row; remove it (the header belongs on line 1 only)",
    ),
}


@pytest.mark.parametrize("case", sorted(ORDER_CASES))
def test_order_details_refusals_name_file_line_and_column(tmp_path: Path, case: str) -> None:
    content, message = ORDER_CASES[case]
    path = tmp_path / "order_details.csv"
    path.write_bytes(content.encode("utf-8", "surrogateescape"))
    with pytest.raises(CsvContractError) as raised:
        read_table(spec(path))
    assert str(raised.value) == f"{path}: {message}"
    assert isinstance(raised.value, ValueError)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.csv"
    with pytest.raises(CsvContractError, match="^" + str(path) + ": file not found$"):
        read_table(spec(path))


def test_a_quoted_field_over_two_lines_keeps_file_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text(
        'given_name,family_name,date_of_birth,place_of_birth\nAnn,"Two\nLines",2000-01-01,X\nBob,B,2000-13-01,Y\n'
    )
    with pytest.raises(CsvContractError) as raised:
        read_table(spec(path, PEOPLE_COLUMNS))
    assert str(raised.value) == f"{path}: line 4, column 'date_of_birth': '2000-13-01' is not a date (YYYY-MM-DD)"


TYPED_CASES = {
    "decimal places": (
        "1,a,1.234,1,2024-01-01,2024-01-01T00:00:00,true",
        "price",
        "'1.234' is not a decimal with at most 2 decimal places",
    ),
    "decimal digits": (
        "1,a,123456789,1,2024-01-01,2024-01-01T00:00:00,true",
        "price",
        "'123456789' is not a decimal with at most 2 decimal places and 8 digits",
    ),
    "decimal text": ("1,a,one,1,2024-01-01,2024-01-01T00:00:00,true", "price", "'one' is not a decimal"),
    "date": ("1,a,1.00,1,2024-02-30,2024-01-01T00:00:00,true", "day", "'2024-02-30' is not a date (YYYY-MM-DD)"),
    "date format": ("1,a,1.00,1,31/01/2024,2024-01-01T00:00:00,true", "day", "'31/01/2024' is not a date (YYYY-MM-DD)"),
    "timestamp zone": (
        "1,a,1.00,1,2024-01-01,2024-01-01T00:00:00Z,true",
        "at",
        "'2024-01-01T00:00:00Z' is not a timestamp",
    ),
    "timestamp text": ("1,a,1.00,1,2024-01-01,noon,true", "at", "'noon' is not a timestamp"),
    "boolean": ("1,a,1.00,1,2024-01-01,2024-01-01T00:00:00,yes", "active", "'yes' is not a boolean"),
    "empty date": ("1,a,1.00,1,,2024-01-01T00:00:00,true", "day", "empty value"),
    "empty boolean": ("1,a,1.00,1,2024-01-01,2024-01-01T00:00:00,", "active", "empty value"),
    "empty decimal": ("1,a,,1,2024-01-01,2024-01-01T00:00:00,true", "price", "empty value"),
}


@pytest.mark.parametrize("case", sorted(TYPED_CASES))
def test_each_type_refuses_what_it_cannot_hold(tmp_path: Path, case: str) -> None:
    row, column, message = TYPED_CASES[case]
    path = tmp_path / "typed.csv"
    path.write_text(f"{TYPED_HEADER}\n1,a,1.00,1,2024-01-01,2024-01-01T00:00:00,true\n{row}")
    with pytest.raises(CsvContractError) as raised:
        read_table(spec(path, TYPED_COLUMNS))
    assert str(raised.value).startswith(f"{path}: line 3, column '{column}': {message}")


# -- a header line among the data ---------------------------------------------------------


def repeated_header(path: Path, line: int, columns: dict[str, str]) -> str:
    return (
        f"{path}: line {line}: a repeated header line ({','.join(columns)}), not a data row; "
        "remove it (the header belongs on line 1 only)"
    )


def with_line(source: Path, line: int, text: str) -> list[str]:
    """The source file's lines with `text` inserted as file line `line`."""
    lines = source.read_text(encoding="utf-8").splitlines()
    return [*lines[: line - 1], text, *lines[line - 1 :]]


PLACES_HEADER = ",".join(PLACES_COLUMNS)
# How the header line comes back among the data (all text columns: the vectorised check).
HEADER_SPELLINGS = {
    "as line 1": PLACES_HEADER,
    "quoted": ",".join(f'"{name}"' for name in PLACES_COLUMNS),
    "outer spaces and tabs": " city ,\tcounty, country ",
    "after a BOM (two files concatenated)": "\ufeff" + PLACES_HEADER,
}


@pytest.mark.parametrize("spelling", sorted(HEADER_SPELLINGS))
@pytest.mark.parametrize("line", [2, 4])
def test_a_repeated_header_line_is_refused_with_file_and_line(tmp_path: Path, spelling: str, line: int) -> None:
    path = tmp_path / "places.csv"
    path.write_text("\n".join(with_line(FIXTURES / "places.csv", line, HEADER_SPELLINGS[spelling])))
    with pytest.raises(CsvContractError) as raised:
        read_table(spec(path, PLACES_COLUMNS))
    assert str(raised.value) == repeated_header(path, line, PLACES_COLUMNS)


def test_a_header_line_is_refused_even_where_the_header_is_all_a_file_has(tmp_path: Path) -> None:
    path = tmp_path / "places.csv"
    path.write_text(f"{PLACES_HEADER}\n{PLACES_HEADER}\n")
    with pytest.raises(CsvContractError) as raised:
        read_table(spec(path, PLACES_COLUMNS))
    assert str(raised.value) == repeated_header(path, 2, PLACES_COLUMNS)


def test_a_line_that_only_looks_like_the_header_is_data(tmp_path: Path) -> None:
    """Case matters, and a typed column compares the file's text, not its value (01 is not 1)."""
    places = tmp_path / "places.csv"
    places.write_text(f"{PLACES_HEADER}\ncity,county,Country\ncity,county\tx,country\n")
    assert read_table(spec(places, PLACES_COLUMNS)).to_pylist() == [
        dict(zip(PLACES_COLUMNS, row, strict=True)) for row in csv_rows(places)
    ]
    numbered = tmp_path / "numbered.csv"
    numbered.write_text("1,label\n01,label\n1.0,label\n")
    assert read_table(spec(numbered, {"1": "number", "label": "string"})).to_pylist() == [
        {"1": float(value), "label": label} for value, label in csv_rows(numbered)
    ]


# Files whose typed columns cannot hold the header's text: pyarrow's conversion error, or a
# later check, meets the header line first; the message says what it is.
TYPED_HEADER_CASES = {
    "a date column (people)": (PEOPLE_COLUMNS, (FIXTURES / "people.csv").read_text()),
    "an integer first column (typed)": (TYPED_COLUMNS, (FIXTURES / "typed.csv").read_text()),
    "a column named nan of numbers (the finite check)": ({"nan": "number", "label": "string"}, "nan,label\n1.5,a\n2,b"),
    "a column named 7 of integers (its name is a value)": ({"7": "integer", "label": "string"}, "7,label\n1,a\n2,b"),
}


@pytest.mark.parametrize("case", sorted(TYPED_HEADER_CASES))
def test_a_repeated_header_in_typed_columns_is_named_as_such(tmp_path: Path, case: str) -> None:
    columns, content = TYPED_HEADER_CASES[case]
    source = tmp_path / "source.csv"
    source.write_text(content)
    path = tmp_path / "repeated.csv"
    path.write_text("\n".join(with_line(source, 3, ",".join(columns))) + "\n")
    with pytest.raises(CsvContractError) as raised:
        read_table(spec(path, columns))
    assert str(raised.value) == repeated_header(path, 3, columns)
    assert read_table(spec(source, columns)).num_rows == len(csv_rows(source))  # the file without it is good


def test_a_repeated_header_deep_in_a_later_block_is_named_by_its_file_line(tmp_path: Path) -> None:
    """Quoted line breaks and blank lines before it: the line is the file's, not the record's."""
    lines = [PLACES_HEADER]
    for i in range(3000):
        lines += [f'"Two\nline {i}",County {i},Country'] if i % 3 else [f"City {i},County {i},Country", ""]
    header_at = sum(line.count("\n") + 1 for line in lines) + 1
    lines += [PLACES_HEADER, "Last,County,Country"]
    path = tmp_path / "places.csv"
    path.write_text("\n".join(lines) + "\n")
    assert path.stat().st_size > 8 * 4096
    with pytest.raises(CsvContractError) as raised:
        read_table(spec(path, PLACES_COLUMNS), block_size=4096)
    assert str(raised.value) == repeated_header(path, header_at, PLACES_COLUMNS)
    assert path.read_text().split("\n")[header_at - 1] == PLACES_HEADER


def test_no_record_leaves_a_file_with_a_repeated_header(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "places.csv"
    path.write_text("\n".join(with_line(FIXTURES / "places.csv", 2, PLACES_HEADER)))
    with pytest.raises(CsvContractError, match="line 2: a repeated header line"):
        run_tap({"files": [entry(path, PLACES_COLUMNS, "places", ["city"])]}, capsys)
    assert '"type":"RECORD"' not in capsys.readouterr().out.replace(" ", "")


# -- accepted files --------------------------------------------------------------------


def test_order_details_fixture_has_the_declared_types_and_values() -> None:
    path = FIXTURES / "order_details.csv"
    table = read_table(spec(path))
    assert [str(f.type) for f in table.schema] == ["int64", "int64", "double", "int64", "double"]
    assert all(not f.nullable for f in table.schema)
    expected = [[int(a), int(b), float(c), int(d), float(e)] for a, b, c, d, e in csv_rows(path)]
    assert [list(r.values()) for r in table.to_pylist()] == expected


def test_people_and_places_keep_multibyte_text_and_a_last_line_without_newline() -> None:
    people, places = FIXTURES / "people.csv", FIXTURES / "places.csv"
    assert not people.read_bytes().endswith(b"\n") and not places.read_bytes().endswith(b"\n")
    people_table = read_table(spec(people, PEOPLE_COLUMNS))
    assert people_table.schema.field("date_of_birth").type == pa.date32()
    expected = [[g, f, dt.date.fromisoformat(d), p] for g, f, d, p in csv_rows(people)]
    assert [list(r.values()) for r in people_table.to_pylist()] == expected
    assert any(ord(ch) > 127 for row in expected for ch in row[0] + row[1])
    assert expected[-1][3] == ""  # an empty string field is allowed, and stays "" (not null)
    places_table = read_table(spec(places, PLACES_COLUMNS))
    assert [list(r.values()) for r in places_table.to_pylist()] == csv_rows(places)


def test_every_type_is_read_as_declared() -> None:
    path = FIXTURES / "typed.csv"
    table = read_table(spec(path, TYPED_COLUMNS))
    assert [str(f.type) for f in table.schema] == [
        "int64",
        "string",
        "decimal128(10, 2)",
        "double",
        "date32[day]",
        "timestamp[us]",
        "bool",
    ]
    bools = {"true": True, "1": True, "false": False, "0": False}
    expected = [
        [
            int(i),
            label,
            Decimal(price).quantize(Decimal("0.01")),
            float(amount),
            dt.date.fromisoformat(day),
            dt.datetime.fromisoformat(at),
            bools[active],
        ]
        for i, label, price, amount, day, at, active in csv_rows(path)
    ]
    assert [list(r.values()) for r in table.to_pylist()] == expected


def test_bom_crlf_and_quoted_fields_give_an_equal_table(tmp_path: Path) -> None:
    source = FIXTURES / "order_details.csv"
    lines = source.read_text().splitlines()
    quoted = [lines[0]] + [",".join(f'"{v}"' for v in line.split(",")) for line in lines[1:]]
    odd = tmp_path / "order_details.csv"
    odd.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(quoted).encode() + b"\r\n")
    plain = read_table(spec(source))
    assert plain.num_rows == len(lines) - 1
    assert read_table(spec(odd)).equals(plain)


# -- the tap: records, schema, nothing for a bad file ------------------------------------


def test_records_carry_the_declared_json_types(capsys: pytest.CaptureFixture[str]) -> None:
    path = FIXTURES / "typed.csv"
    messages = run_tap({"files": [entry(path, TYPED_COLUMNS, "typed", ["id"])]}, capsys)
    schema = next(m for m in messages if m["type"] == "SCHEMA")
    assert schema["key_properties"] == ["id"]
    assert schema["schema"]["properties"]["price"] == {
        "type": "string",
        "format": "x-singer.decimal",
        "x-sql-datatype": "decimal",
        "x-sql-datatype-properties": {"precision": 10, "scale": 2},
    }
    assert schema["schema"]["properties"]["at"] == {"type": "string", "format": "date-time"}
    assert schema["schema"]["required"] == list(TYPED_COLUMNS)
    records = [m["record"] for m in messages if m["type"] == "RECORD"]
    rows = csv_rows(path)
    assert len(records) == len(rows)
    assert [r["price"] for r in records] == [str(Decimal(row[2]).quantize(Decimal("0.01"))) for row in rows]
    assert [r["day"] for r in records] == [row[4] for row in rows]
    assert [dt.datetime.fromisoformat(r["at"]) for r in records] == [dt.datetime.fromisoformat(row[5]) for row in rows]
    assert [r["label"] for r in records] == [row[1] for row in rows]
    assert [r["id"] for r in records] == [int(row[0]) for row in rows]


def test_a_bad_last_row_means_no_record_leaves(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "order_details.csv"
    good = (FIXTURES / "order_details.csv").read_text()
    path.write_text(good + "10255,2,15.2,many,0\n")
    with pytest.raises(CsvContractError, match="line 21, column 'quantity': 'many' is not an integer"):
        run_tap({"files": [entry(path, ORDER_COLUMNS, "order_details", ["order_id", "product_id"])]}, capsys)
    out = capsys.readouterr().out
    assert '"type":"RECORD"' not in out.replace(" ", "")


# -- the `files` setting ---------------------------------------------------------------

CONFIG_CASES = {
    "empty list": ([], "files: expected a non-empty list"),
    "unknown type": (
        [{"stream": "a", "path": "a.csv", "columns": {"x": "float"}}],
        "files[0] (stream 'a'): column 'x': unknown type 'float'",
    ),
    "bad decimal": (
        [{"stream": "a", "path": "a.csv", "columns": {"x": "decimal(2,3)"}}],
        "files[0] (stream 'a'): column 'x': 'decimal(2,3)'",
    ),
    "duplicate stream": (
        [
            {"stream": "a", "path": "a.csv", "columns": {"x": "string"}},
            {"stream": "a", "path": "b.csv", "columns": {"x": "string"}},
        ],
        "files[1] (stream 'a'): duplicate stream name 'a'",
    ),
    "key not in columns": (
        [{"stream": "a", "path": "a.csv", "key": ["id"], "columns": {"x": "string"}}],
        "files[0] (stream 'a'): key column(s) ['id'] not in columns ['x']",
    ),
    "no columns": ([{"stream": "a", "path": "a.csv", "columns": {}}], "files[0] (stream 'a'): 'columns' must be"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_the_files_setting_is_checked_and_names_the_stream(case: str) -> None:
    files, message = CONFIG_CASES[case]
    with pytest.raises(CsvConfigError) as raised:
        parse_files(files)
    assert str(raised.value).startswith(message)
    with pytest.raises(CsvConfigError):
        TapCSV(config={"files": files}, validate_config=False).discover_streams()


def test_column_order_in_the_setting_is_the_header_order() -> None:
    columns = {"z": "string", "a": "integer", "m": "decimal( 12 , 4 )"}
    parsed = parse_files([{"stream": "s", "path": "s.csv", "columns": columns}])[0]
    assert parsed.names == ["z", "a", "m"]
    assert parsed.arrow_schema.field("m").type == pa.decimal128(12, 4)
