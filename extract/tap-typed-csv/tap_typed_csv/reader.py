"""Read a CSV file against its declared columns, in bulk, or fail naming file, line and column.

The reader streams the file with pyarrow (``pyarrow.csv.open_csv``) in blocks, at most
``READ_AHEAD_BLOCKS`` of them read ahead (`_PacedFile`), so memory stays flat in the file size.
Every error is a :class:`CsvContractError` whose message names the file, the 1-based file line
(header = line 1) and, where there is one, the column. When pyarrow refuses a value, the failing
record is looked up again with Python's ``csv`` module to name its line and value exactly.
A data line equal to the header is refused too (`_refuse_header_rows`, vectorised per block).
"""

from __future__ import annotations

import csv
import io
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

# pyarrow.compute and pyarrow.csv are imported where a file is read: parsing the settings
# (discovery, --about) needs the Arrow types only.
import pyarrow as pa

BLOCK_SIZE = 1 << 20  # bytes pyarrow parses at a time: memory is a few blocks, whatever the file size
# Blocks of raw text read ahead of the batches taken. pyarrow's own read-ahead (32 blocks, not a
# setting: ARROW-12090) held 32 MiB of a big file but all of a small one, so peak memory grew
# with the file up to that; 8 keeps the reader as fast (measured on 20 M rows).
READ_AHEAD_BLOCKS = 8
TRUE_VALUES = ["true", "True", "TRUE", "1"]
FALSE_VALUES = ["false", "False", "FALSE", "0"]
TYPE_NAMES = ("string", "integer", "number", "decimal(P,S)", "date", "timestamp", "boolean")
_DECIMAL = re.compile(r"decimal\(\s*(\d+)\s*,\s*(\d+)\s*\)")
ASCII_SPACES = " \t\n\v\f\r"  # what pyarrow's ascii_trim_whitespace removes
BOM = "\ufeff"
_SIMPLE_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "integer": pa.int64(),
    "number": pa.float64(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),
    "boolean": pa.bool_(),
}


class CsvContractError(ValueError):
    """The file does not match its declared columns; the message names file, line and column."""


class CsvConfigError(ValueError):
    """The `files` setting is invalid; the message names the stream (or the entry's position)."""


@dataclass(frozen=True)
class Column:
    name: str
    type_name: str  # as declared: "integer", "decimal(10,2)", ...
    arrow_type: pa.DataType

    @property
    def is_string(self) -> bool:
        return self.type_name == "string"

    def not_a(self) -> str:
        """What a refused value is not, for the message ``'x' is not ...``."""
        arrow_type = self.arrow_type
        if pa.types.is_decimal(arrow_type):
            whole = arrow_type.precision - arrow_type.scale
            return (
                f"a decimal with at most {arrow_type.scale} decimal places "
                f"and {whole} digits before the point ({self.type_name})"
            )
        return {
            "integer": "an integer",
            "number": "a number",
            "date": "a date (YYYY-MM-DD)",
            "timestamp": "a timestamp (ISO 8601 YYYY-MM-DD[THH:MM[:SS[.ffffff]]], no time zone)",
            "boolean": f"a boolean ({'/'.join(TRUE_VALUES + FALSE_VALUES)})",
        }.get(self.type_name, self.type_name)

    def json_schema(self) -> dict[str, Any]:
        arrow_type = self.arrow_type
        if pa.types.is_decimal(arrow_type):
            # The Singer SDK's decimal convention (exact text); precision and scale in the SDK's
            # x-sql-datatype extension, which survives the SDK's schema handling (plain keys do not).
            return {
                "type": "string",
                "format": "x-singer.decimal",
                "x-sql-datatype": "decimal",
                "x-sql-datatype-properties": {"precision": arrow_type.precision, "scale": arrow_type.scale},
            }
        return {
            "string": {"type": "string"},
            "integer": {"type": "integer"},
            "number": {"type": "number"},
            "date": {"type": "string", "format": "date"},
            "timestamp": {"type": "string", "format": "date-time"},
            "boolean": {"type": "boolean"},
        }[self.type_name]


@dataclass(frozen=True)
class FileSpec:
    """One entry of the `files` setting: a stream read from one CSV file with declared columns."""

    stream: str
    path: Path
    key: tuple[str, ...]
    columns: tuple[Column, ...]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, c.arrow_type, nullable=False) for c in self.columns])

    def json_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {c.name: c.json_schema() for c in self.columns},
            "required": self.names,
        }


def parse_type(text: str) -> pa.DataType:
    """The Arrow type of a declared column type; ValueError for anything else."""
    if text in _SIMPLE_TYPES:
        return _SIMPLE_TYPES[text]
    match = _DECIMAL.fullmatch(text)
    if match:
        precision, scale = int(match.group(1)), int(match.group(2))
        if not 1 <= precision <= 38 or scale > precision:
            raise ValueError(f"{text!r}: decimal(P,S) needs 1 <= P <= 38 and 0 <= S <= P")
        return pa.decimal128(precision, scale)
    raise ValueError(f"unknown type {text!r}; expected one of {', '.join(TYPE_NAMES)}")


def parse_files(entries: Any) -> list[FileSpec]:
    """Validate the `files` setting and return one FileSpec per entry."""
    if not isinstance(entries, list) or not entries:
        raise CsvConfigError("files: expected a non-empty list of {stream, path, key, columns} entries")
    specs: list[FileSpec] = []
    seen: set[str] = set()
    for position, entry in enumerate(entries):
        where = f"files[{position}]"
        if not isinstance(entry, Mapping):
            raise CsvConfigError(f"{where}: expected an object with stream, path, key and columns")
        stream = entry.get("stream")
        if not isinstance(stream, str) or not stream:
            raise CsvConfigError(f"{where}: 'stream' must be a non-empty string")
        where = f"files[{position}] (stream {stream!r})"
        if stream in seen:
            raise CsvConfigError(f"{where}: duplicate stream name {stream!r}")
        seen.add(stream)
        path = entry.get("path")
        if not isinstance(path, str) or not path:
            raise CsvConfigError(f"{where}: 'path' must be a non-empty string")
        columns = entry.get("columns")
        if not isinstance(columns, Mapping) or not columns:
            raise CsvConfigError(f"{where}: 'columns' must be a non-empty object of column name -> type")
        parsed: list[Column] = []
        for name, type_name in columns.items():
            if not isinstance(name, str) or not name.strip() or name != name.strip():
                raise CsvConfigError(f"{where}: column name {name!r} must be non-empty without outer spaces")
            if not isinstance(type_name, str):
                raise CsvConfigError(f"{where}: column {name!r}: type must be a string, got {type_name!r}")
            try:
                arrow_type = parse_type(type_name.strip())
            except ValueError as err:
                raise CsvConfigError(f"{where}: column {name!r}: {err}") from None
            parsed.append(Column(name, type_name.strip().replace(" ", ""), arrow_type))
        key = entry.get("key", [])
        if not isinstance(key, list) or not all(isinstance(k, str) for k in key):
            raise CsvConfigError(f"{where}: 'key' must be a list of column names")
        unknown = [k for k in key if k not in columns]
        if unknown:
            raise CsvConfigError(f"{where}: key column(s) {unknown} not in columns {list(columns)}")
        if len(set(key)) != len(key):
            raise CsvConfigError(f"{where}: key {key} names a column twice")
        specs.append(FileSpec(stream, Path(path), tuple(key), tuple(parsed)))
    return specs


# -- checks before pyarrow -------------------------------------------------------------


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


def _check_header(spec: FileSpec) -> None:
    path, expected = spec.path, spec.names
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as handle:
        first = next(csv.reader(handle), None)
    if first is None:
        raise CsvContractError(f"{path}: the file is empty; expected a header line {','.join(expected)} and data rows")
    found = [name.strip() for name in first]
    if found == expected:
        return
    missing = [c for c in expected if c not in found]
    extra = [c for c in found if c not in expected]
    twice = sorted({c for c in found if found.count(c) > 1})
    parts = [
        f"missing column(s) {missing}" if missing else "",
        f"unexpected column(s) {extra}" if extra else "",
        f"duplicate column(s) {twice}" if twice else "",
    ]
    detail = "; ".join(p for p in parts if p) or f"columns in the wrong order {found}"
    raise CsvContractError(f"{path}: line 1 (header): {detail}; expected {','.join(expected)}")


# -- naming a refused record -----------------------------------------------------------


def _find_records(path: Path, records: Sequence[int]) -> dict[int, tuple[int, list[str]]]:
    """The first file line and fields of each CSV record in `records` (1 = header), counted as
    pyarrow does: blank lines are not records, a quoted field may span lines. One pass."""
    wanted, found = set(records), {}
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        seen = 0
        while wanted - found.keys():
            start = reader.line_num + 1
            try:
                row = next(reader)
            except (StopIteration, csv.Error):
                break
            if not row:
                continue
            seen += 1
            if seen in wanted:
                found[seen] = (start, row)
    return found


def _find_record(path: Path, record: int) -> tuple[int, list[str]] | None:
    return _find_records(path, [record]).get(record)


# -- a header line among the data ------------------------------------------------------


def _is_header(spec: FileSpec, fields: Sequence[str]) -> bool:
    """Whether a data line's fields are the header's names: outer spaces and tabs ignored, and a BOM
    at the line's start (two files concatenated), as line 1 may have one."""
    if len(fields) != len(spec.columns):
        return False
    bare = [field.strip(ASCII_SPACES) for field in fields]
    return bare[1:] == spec.names[1:] and bare[0] in (spec.names[0], BOM + spec.names[0])


def _repeated_header(spec: FileSpec, line: int) -> CsvContractError:
    return CsvContractError(
        f"{spec.path}: line {line}: a repeated header line ({','.join(spec.names)}), not a data row; "
        "remove it (the header belongs on line 1 only)"
    )


def _header_as_row(spec: FileSpec, options: dict[str, Any]) -> list[Any] | None:
    """The header's names as the typed values pyarrow makes of them in a data row, one per column
    (text columns: the name); None when a typed column cannot hold its own name: a repeated header
    then fails conversion, and `_explain` names it."""
    import pyarrow.csv as pacsv

    line = io.StringIO()
    csv.writer(line).writerow(spec.names)
    read = pacsv.ReadOptions(column_names=spec.names, use_threads=False)
    try:
        row = pacsv.read_csv(
            pa.py_buffer(line.getvalue().encode()), read, options["parse_options"], options["convert_options"]
        )
    except pa.ArrowInvalid:
        return None
    return [
        name if column.is_string else row.column(i)[0]
        for i, (name, column) in enumerate(zip(spec.names, spec.columns, strict=True))
    ]


def _refuse_header_rows(spec: FileSpec, batch: pa.RecordBatch, rows_before: int, header: list[Any]) -> None:
    """Refuse a data row equal to the header, vectorised: the rows equal to the header in the first
    column, narrowed column by column (almost always to none after the first); text is compared with
    outer ASCII spaces trimmed. Candidates are confirmed on the file's own text (`_is_header`)."""
    import pyarrow.compute as pc

    candidates: pa.Array | None = None
    for position, (column, wanted) in enumerate(zip(spec.columns, header, strict=True)):
        values = batch.column(position)
        if candidates is not None:
            values = values.take(candidates)
        if column.is_string:
            values = pc.ascii_trim_whitespace(values)
            equal = pc.is_in(values, pa.array([wanted, BOM + wanted])) if position == 0 else pc.equal(values, wanted)
        else:
            equal = pc.equal(values, wanted)
        hits = pc.indices_nonzero(equal)
        candidates = hits if candidates is None else candidates.take(hits)
        if len(candidates) == 0:
            return
    records = [rows_before + index + 2 for index in candidates.to_pylist()]
    found = _find_records(spec.path, records)
    for record in records:
        if record in found and _is_header(spec, found[record][1]):
            raise _repeated_header(spec, found[record][0])


_CONVERSION = re.compile(r"In CSV column #(\d+): Row #(\d+): (.*)", re.DOTALL)
_BAD_VALUE = re.compile(r"invalid value '(.*)'$|Error converting '(.*)' to", re.DOTALL)
_WIDTH = re.compile(r"Row #(\d+): (Expected \d+ columns, got \d+)")


def _explain(spec: FileSpec, message: str) -> str:
    """A pyarrow error as `{path}: line N, column 'x': ...`."""
    path = spec.path
    conversion = _CONVERSION.search(message)
    if conversion:
        index, record, detail = int(conversion.group(1)), int(conversion.group(2)), conversion.group(3)
        column = spec.columns[index]
        found = _find_record(path, record)
        if found and _is_header(spec, found[1]):
            return str(_repeated_header(spec, found[0]))
        value_hit = _BAD_VALUE.search(detail.splitlines()[0] if detail else "")
        if found and index < len(found[1]):
            line, fields = found
            value = fields[index]
        elif value_hit:
            line, value = record, next(g for g in value_hit.groups() if g is not None)
        else:
            return f"{path}: record {record}, column '{column.name}': {detail}"
        return f"{path}: line {line}, column '{column.name}': {value!r} is not {column.not_a()}"
    width = _WIDTH.search(message)
    if width:
        found = _find_record(path, int(width.group(1)))
        line = found[0] if found else int(width.group(1))
        return f"{path}: line {line}: {width.group(2)}"
    return f"{path}: {message}"


def _refuse_row(spec: FileSpec, record: int, column: Column, what: str | None = None) -> CsvContractError:
    found = _find_record(spec.path, record)
    if found and _is_header(spec, found[1]):
        return _repeated_header(spec, found[0])
    line = found[0] if found else record
    if what is None:
        value = found[1][spec.columns.index(column)] if found else "?"
        what = f"{value!r} is not {column.not_a()}"
    return CsvContractError(f"{spec.path}: line {line}, column '{column.name}': {what}")


def _check_batch(spec: FileSpec, batch: pa.RecordBatch, rows_before: int) -> None:
    """Refuse empty values (except in string columns) and non-finite numbers."""
    import pyarrow.compute as pc

    for position, column in enumerate(spec.columns):
        if column.is_string:
            continue
        values = batch.column(position)
        if values.null_count:
            first = pc.index(pc.is_null(values), True).as_py()
            raise _refuse_row(spec, rows_before + first + 2, column, "empty value")
        if pa.types.is_floating(column.arrow_type):
            finite = pc.is_finite(values)
            if not pc.all(finite).as_py():
                first = pc.index(finite, False).as_py()
                raise _refuse_row(spec, rows_before + first + 2, column)
        if pa.types.is_decimal(column.arrow_type):
            # pyarrow checks the scale but not always the precision: 123456789 passes as decimal(10,2).
            scale, whole = column.arrow_type.scale, column.arrow_type.precision - column.arrow_type.scale
            wide = values.view(pa.decimal128(38, scale))
            limit = Decimal(10) ** whole
            fits = pc.and_(pc.greater(wide, pa.scalar(-limit, wide.type)), pc.less(wide, pa.scalar(limit, wide.type)))
            if not pc.all(fits).as_py():
                first = pc.index(fits, False).as_py()
                raise _refuse_row(spec, rows_before + first + 2, column)


# -- reading ---------------------------------------------------------------------------


class _PacedFile:
    """The CSV file as pyarrow's streaming reader reads it, at most `ahead` blocks ahead of the
    batches taken (`taken()`); a read past that waits, on pyarrow's I/O thread.

    pyarrow reads exactly `block_size` bytes a time from it (a buffered file returns no short
    reads), as from the path, so the blocks, batches and Parquet row groups are the same.
    `close()` ends the reading: every later read is the end of the file, and it returns once
    pyarrow's thread has left `read` (a thread still in Python code at exit aborts it).
    """

    # A bound on one wait: pyarrow may drop a reader (a failed open) whose thread waits here.
    WAIT = 1.0

    def __init__(self, path: Path, ahead: int = READ_AHEAD_BLOCKS) -> None:
        self._raw = path.open("rb")
        self._state = threading.Condition()
        self._allowed = ahead
        self._reads = 0
        self._inside = 0
        self._ended = False  # the end of the file was handed out
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self._raw.tell()

    def read(self, size: int = -1) -> bytes:
        with self._state:
            self._inside += 1
            self._state.wait_for(lambda: self._closed or self._reads < self._allowed, timeout=self.WAIT)
            closed = self._closed
            self._reads += 1
        data = b""
        try:
            if not closed:
                data = self._raw.read(size)
            return data
        finally:
            with self._state:
                self._ended = self._ended or not data
                self._inside -= 1
                self._state.notify_all()

    def taken(self) -> None:
        """One batch taken: one more block may be read."""
        with self._state:
            self._allowed += 1
            self._state.notify_all()

    def close(self) -> None:
        with self._state:
            self._closed = True
            self._state.notify_all()
            # pyarrow's thread reads once more (the end) unless it already has or was stopped.
            self._state.wait_for(lambda: self._inside == 0 and self._ended, timeout=self.WAIT)
            self._state.wait_for(lambda: self._inside == 0)
        self._raw.close()


def iter_batches(spec: FileSpec, block_size: int = BLOCK_SIZE) -> Iterator[pa.RecordBatch]:
    """Typed, checked record batches of the file, streamed block by block.

    A bad row raises CsvContractError when its batch is reached: batches before it have already
    been yielded, so a caller that must emit nothing for a bad file checks the whole file first
    (see `validate`) or stages its output until the iteration ends.
    """
    import pyarrow.csv as pacsv

    path = spec.path
    if not path.is_file():
        raise CsvContractError(f"{path}: file not found")
    _check_utf8(path)
    _check_header(spec)
    schema = spec.arrow_schema
    options = {
        "read_options": pacsv.ReadOptions(
            column_names=spec.names, skip_rows=1, use_threads=False, block_size=block_size
        ),
        "parse_options": pacsv.ParseOptions(newlines_in_values=True),
        "convert_options": pacsv.ConvertOptions(
            column_types={c.name: c.arrow_type for c in spec.columns},
            null_values=[""],
            strings_can_be_null=False,
            true_values=TRUE_VALUES,
            false_values=FALSE_VALUES,
        ),
    }
    header = _header_as_row(spec, options)
    rows = 0
    source = _PacedFile(path)
    try:
        reader = pacsv.open_csv(source, **options)
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            source.taken()
            if batch.num_rows == 0:
                continue
            _check_batch(spec, batch, rows)
            if header is not None:
                _refuse_header_rows(spec, batch, rows, header)
            rows += batch.num_rows
            yield pa.RecordBatch.from_arrays(batch.columns, schema=schema)
    except pa.ArrowInvalid as err:
        if "Could not skip initial" in str(err) or "Empty CSV file" in str(err):
            raise CsvContractError(f"{path}: only a header line, no data rows") from None
        raise CsvContractError(_explain(spec, str(err))) from None
    finally:
        source.close()
    if rows == 0:
        raise CsvContractError(f"{path}: only a header line, no data rows")


def validate(spec: FileSpec, block_size: int = BLOCK_SIZE) -> int:
    """Check the whole file without keeping it; return its number of data rows."""
    return sum(batch.num_rows for batch in iter_batches(spec, block_size))


def read_table(spec: FileSpec, block_size: int = BLOCK_SIZE) -> pa.Table:
    """The whole file as one typed table (for small files and tests); nothing unless every row fits."""
    return pa.Table.from_batches(list(iter_batches(spec, block_size)), schema=spec.arrow_schema)


def to_json_columns(batch: pa.RecordBatch) -> pa.RecordBatch:
    """The batch with decimals, dates and timestamps as their canonical text, for RECORD messages."""
    import pyarrow.compute as pc

    arrays, fields = [], []
    for field, values in zip(batch.schema, batch.columns, strict=True):
        if pa.types.is_decimal(field.type) or pa.types.is_date(field.type):
            values = values.cast(pa.string())
        elif pa.types.is_timestamp(field.type):
            values = pc.strftime(values, format="%Y-%m-%dT%H:%M:%S")
        arrays.append(values)
        fields.append(pa.field(field.name, values.type, nullable=False))
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))


def file_signature(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


__all__: Sequence[str] = [
    "BLOCK_SIZE",
    "Column",
    "CsvConfigError",
    "CsvContractError",
    "FileSpec",
    "file_signature",
    "iter_batches",
    "parse_files",
    "parse_type",
    "read_table",
    "to_json_columns",
    "validate",
]
