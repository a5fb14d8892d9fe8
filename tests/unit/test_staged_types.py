"""Which raw types the load stages directly (ADBC's binary COPY fills them) and which it converts at commit."""

from __future__ import annotations

import pyarrow as pa
import pytest

from northwind_elt.load import staged_type


@pytest.mark.parametrize(
    ("final", "arrow_type"),
    [
        ("integer", pa.int32()),
        ("smallint", pa.int16()),
        ("numeric(20,6)", pa.decimal128(20, 6)),
        ("character varying(40)", pa.string()),
        ("character(5)", pa.string()),
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
