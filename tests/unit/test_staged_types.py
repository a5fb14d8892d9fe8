"""Which raw types the load stages directly (ADBC's binary COPY fills them) and which it converts at commit."""

from __future__ import annotations

import pyarrow as pa
import pytest

from northwind_elt.protocol.swap import holds, staged_type


@pytest.mark.parametrize(
    ("final", "arrow_type"),
    [
        ("integer", pa.int32()),
        ("smallint", pa.int16()),
        ("numeric(20,6)", pa.decimal128(20, 6)),
        ("character varying(40)", pa.string()),
        ("character(5)", pa.string()),
        ("bpchar", pa.string()),  # char without a length, as Northwind's sources have it
        ("timestamp(3) without time zone", pa.timestamp("us")),
        ("timestamp with time zone", pa.timestamp("us", tz="UTC")),
        ("time(0) without time zone", pa.time64("us")),
        ("integer[]", pa.list_(pa.int32())),
        ("bytea", pa.binary()),
    ],
)
def test_types_the_bulk_copy_fills_are_staged_as_raw_has_them(final: str, arrow_type: pa.DataType) -> None:
    assert staged_type(final, arrow_type) == final


@pytest.mark.parametrize(
    ("final", "arrow_type", "staged"),
    [
        ("uuid", pa.string(), "text"),
        ("jsonb", pa.string(), "text"),
        ("inet", pa.string(), "text"),
        ("numeric", pa.string(), "text"),  # unconstrained numeric travels as its exact text
        ("character varying(10)[]", pa.list_(pa.string()), "text[]"),  # arrays name their element type
        ("interval", pa.string(), "text"),
    ],
)
def test_other_types_are_staged_as_sent_and_converted_at_commit(
    final: str, arrow_type: pa.DataType, staged: str
) -> None:
    assert staged_type(final, arrow_type) == staged


@pytest.mark.parametrize(
    ("raw", "file"),
    [
        ("numeric(12,4)", "numeric(10,2)"),
        ("numeric", "numeric(10,2)"),
        ("bigint", "smallint"),
        ("character varying(40)", "character varying(15)"),
        ("text", "character varying(15)"),
        ("timestamp without time zone", "timestamp(3) without time zone"),
        ("uuid", "uuid"),
    ],
)
def test_a_wider_raw_column_holds_the_days_values(raw: str, file: str) -> None:
    assert holds(raw, file)


@pytest.mark.parametrize(
    ("raw", "file"),
    [
        ("numeric(10,2)", "numeric(12,4)"),
        ("numeric(10,2)", "numeric"),
        ("integer", "bigint"),
        ("character varying(15)", "character varying(40)"),
        ("character varying(15)", "text"),
        ("text", "character(5)"),  # the padding would go
        ("timestamp without time zone", "timestamp with time zone"),
        ("text", "uuid"),
        ("integer[]", "bigint[]"),
    ],
)
def test_any_other_type_change_is_refused(raw: str, file: str) -> None:
    assert not holds(raw, file)
