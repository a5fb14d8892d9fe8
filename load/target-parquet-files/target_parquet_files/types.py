"""JSON Schema (as Singer taps emit it) to Arrow types, and records to Arrow tables."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pyarrow as pa


def _declared_types(prop: dict[str, Any]) -> set[str]:
    """Every type a property allows, "null" included, through anyOf."""
    declared = prop.get("type", [])
    types = {declared} if isinstance(declared, str) else set(declared)
    for option in prop.get("anyOf", []):
        types |= _declared_types(option)
    return types


def _types_of(prop: dict[str, Any]) -> set[str]:
    return _declared_types(prop) - {"null"}


def arrow_type(prop: dict[str, Any]) -> pa.DataType:
    types = _types_of(prop)
    if types & {"object", "array"}:
        return pa.string()  # kept as JSON text
    if types == {"integer"}:
        return pa.int64()
    if types <= {"integer", "number"} and types:
        return pa.float64()
    if types == {"boolean"}:
        return pa.bool_()
    fmt = prop.get("format")
    if fmt == "date":
        return pa.date32()
    if fmt == "date-time":
        return pa.timestamp("us", tz="UTC")
    if prop.get("contentEncoding") == "base16":
        return pa.binary()
    return pa.string()


def arrow_schema(json_schema: dict[str, Any]) -> pa.Schema:
    required = set(json_schema.get("required", []))
    fields = []
    for name, prop in json_schema.get("properties", {}).items():
        nullable = "null" in _declared_types(prop) or name not in required
        fields.append(pa.field(name, arrow_type(prop), nullable=nullable))
    return pa.schema(fields)


def _convert(value: Any, type_: pa.DataType) -> Any:
    """Normalise one JSON-decoded value to what pyarrow accepts for the column type."""
    if value is None:
        return None
    if pa.types.is_floating(type_):
        return float(value)
    if pa.types.is_integer(type_):
        return int(value)
    if pa.types.is_binary(type_):
        text = value[2:] if isinstance(value, str) and value.startswith(("\\x", "0x")) else value
        return bytes.fromhex(text) if isinstance(text, str) else bytes(text)
    if pa.types.is_string(type_) and not isinstance(value, str):
        return json.dumps(value, default=str) if isinstance(value, (dict, list)) else str(value)
    if isinstance(value, Decimal):
        return float(value)
    return value


def records_to_table(records: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    columns = []
    for field in schema:
        values = [_convert(record.get(field.name), field.type) for record in records]
        temporal = pa.types.is_date32(field.type) or pa.types.is_timestamp(field.type)
        if temporal and any(isinstance(v, str) for v in values):
            # ISO strings parse through a string array; date/datetime objects go direct.
            columns.append(pa.array(values, pa.string()).cast(field.type))
        else:
            columns.append(pa.array(values, field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Give a table read from a BATCH file exactly the stream's column order and types."""
    columns = []
    for field in schema:
        if field.name not in table.column_names:
            columns.append(pa.nulls(table.num_rows, field.type))
            continue
        column = table.column(field.name)
        if column.type != field.type:
            if pa.types.is_binary(field.type) and pa.types.is_string(column.type):
                column = pa.array([_convert(v, field.type) for v in column.to_pylist()], field.type)
            else:
                column = column.cast(field.type)
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=schema)


def _untyped(kind: pa.DataType) -> bool:
    """Text or nulls: what a tap writes when it has no better type for a column."""
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind)


def adopt(table: pa.Table, declared: pa.Schema) -> pa.Table:
    """A BATCH file's table as written, except text the stream declares as something else.

    A typed column (decimal, list, timestamp with zone, binary...) and its field metadata
    are kept exactly: re-encoding it through the JSON Schema would lose digits or types.
    A text column that the stream declares as a number, date or binary is parsed into
    that type (taps without Arrow types write such text), unless the file describes the
    column in field metadata: then the text is deliberate (e.g. an unconstrained numeric
    in its exact canonical form, which a double would round). Declared columns the file
    lacks are added as nulls.
    """
    fields, columns = [], []
    for field in table.schema:
        column = table.column(field.name)
        want = declared.field(field.name) if field.name in declared.names else None
        if want is not None and not field.metadata and _untyped(field.type) and not _untyped(want.type):
            column = conform(table.select([field.name]), pa.schema([want])).column(0)
            field = want.with_metadata(field.metadata)
        fields.append(field)
        columns.append(column)
    for want in declared:
        if want.name not in table.column_names:
            fields.append(want)
            columns.append(pa.nulls(table.num_rows, want.type))
    return pa.Table.from_arrays(columns, schema=pa.schema(fields, metadata=table.schema.metadata))
