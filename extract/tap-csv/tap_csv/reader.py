"""Read the CSV with pyarrow against declared column types, or fail naming file, line and column."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

# The declared contract of order_details.csv: column order, names and types.
COLUMNS: dict[str, pa.DataType] = {
    "order_id": pa.int64(),
    "product_id": pa.int64(),
    "unit_price": pa.float64(),
    "quantity": pa.int64(),
    "discount": pa.float64(),
}
KEY = ("order_id", "product_id")
_TYPE_NAMES = {pa.int64(): "an integer", pa.float64(): "a number"}


class CsvContractError(ValueError):
    """The file does not match the declared contract; the message names file, line and column."""


def _explain(path: Path, message: str) -> str:
    column_hit = re.search(
        r"In CSV column #(\d+): Row #(\d+): CSV conversion error to (\w+): invalid value '(.*)'", message
    )
    if column_hit:
        index, line, _, value = column_hit.groups()
        name = list(COLUMNS)[int(index)]
        return f"{path}: line {line}, column '{name}': {value!r} is not {_TYPE_NAMES[COLUMNS[name]]}"
    row_hit = re.search(r"Row #(\d+): (Expected \d+ columns, got \d+)", message)
    if row_hit:
        return f"{path}: line {row_hit.group(1)}: {row_hit.group(2)}"
    if "Empty CSV file" in message:
        return f"{path}: the file is empty; expected a header line {','.join(COLUMNS)} and data rows"
    return f"{path}: {message}"


def _check_utf8(path: Path) -> None:
    """Reject bytes that are not UTF-8, naming the line: pyarrow would only name a column."""
    line, carry = 1, b""
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            data = carry + block
            try:
                data.decode("utf-8")
                carry = b""
            except UnicodeDecodeError as err:
                if err.end == len(data) and err.reason == "unexpected end of data" and len(data) - err.start < 4:
                    carry = data[err.start :]  # a character split across blocks
                    data = data[: err.start]
                else:
                    bad_line = line + data.count(b"\n", 0, err.start)
                    raise CsvContractError(
                        f"{path}: line {bad_line}: invalid UTF-8 byte(s) {data[err.start : err.end]!r}; "
                        "save the file as UTF-8"
                    ) from None
            line += data.count(b"\n")
    if carry:
        raise CsvContractError(f"{path}: line {line}: the file ends inside a UTF-8 character")


def _header(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as handle:
        first = next(csv.reader(handle), None)
    if first is None:
        raise CsvContractError(_explain(path, "Empty CSV file"))
    return [name.strip() for name in first]


def read_order_details(path: Path) -> pa.Table:
    """The whole file as one typed table; nothing is returned unless every row fits."""
    if not path.exists():
        raise CsvContractError(f"{path}: file not found")
    _check_utf8(path)
    found = _header(path)
    if found != list(COLUMNS):
        missing = [c for c in COLUMNS if c not in found]
        extra = [c for c in found if c not in COLUMNS]
        detail = (
            "; ".join(
                part
                for part in (
                    f"missing column(s) {missing}" if missing else "",
                    f"unexpected column(s) {extra}" if extra else "",
                )
                if part
            )
            or f"columns in the wrong order {found}"
        )
        raise CsvContractError(f"{path}: line 1 (header): {detail}; expected {','.join(COLUMNS)}")
    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(use_threads=False),
            convert_options=pacsv.ConvertOptions(column_types=COLUMNS, strings_can_be_null=False),
        )
    except pa.ArrowInvalid as err:
        raise CsvContractError(_explain(path, str(err))) from None
    if table.num_rows == 0:
        raise CsvContractError(f"{path}: only a header line, no data rows")
    for name in COLUMNS:
        column = table.column(name)
        if column.null_count:
            first = pc.index(pc.is_null(column), True).as_py()
            raise CsvContractError(f"{path}: line {first + 2}, column '{name}': empty value")
    return table.cast(pa.schema([pa.field(n, t, nullable=False) for n, t in COLUMNS.items()]))
