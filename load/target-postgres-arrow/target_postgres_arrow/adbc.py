"""ADBC connection URI and the Arrow -> Postgres type mapping that ADBC bulk ingest uses."""

from __future__ import annotations

import re
from urllib.parse import quote, urlencode

import pyarrow as pa
from sqlalchemy.engine import URL, make_url

_TYPMOD = re.compile(r"\(\d+(,\s*-?\d+)?\)")


class UnsupportedArrowTypeError(TypeError):
    """An Arrow column type that the BATCH path does not know how to map to Postgres."""


def adbc_uri(sqlalchemy_url: str | URL) -> str:
    """Turn the parent's SQLAlchemy URL into a libpq URI for ADBC (user/password percent-encoded).

    The parent builds its SQLAlchemy URL from `sqlalchemy_url` or host/port/user/password/database
    (plus ssl_* query parameters, and the SSH tunnel's local address), so this follows the same settings.
    The result holds the password: never log it.
    """
    url = make_url(sqlalchemy_url) if isinstance(sqlalchemy_url, str) else sqlalchemy_url
    userinfo = ""
    if url.username:
        userinfo = quote(url.username, safe="")
        if url.password is not None:
            userinfo += ":" + quote(str(url.password), safe="")
        userinfo += "@"
    host = url.host or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    port = f":{url.port}" if url.port else ""
    database = quote(url.database or "", safe="")
    query = urlencode([(k, v) for k, vs in url.query.items() for v in ((vs,) if isinstance(vs, str) else vs)])
    return f"postgresql://{userinfo}{host}{port}/{database}" + (f"?{query}" if query else "")


_SCALAR_TYPES: list[tuple[object, str]] = [
    (pa.types.is_int8, "smallint"),
    (pa.types.is_int16, "smallint"),
    (pa.types.is_int32, "integer"),
    (pa.types.is_int64, "bigint"),
    (pa.types.is_float32, "real"),
    (pa.types.is_float64, "double precision"),
    (pa.types.is_decimal, "numeric"),
    (pa.types.is_string, "text"),
    (pa.types.is_large_string, "text"),
    (pa.types.is_string_view, "text"),
    (pa.types.is_binary, "bytea"),
    (pa.types.is_large_binary, "bytea"),
    (pa.types.is_boolean, "boolean"),
    (pa.types.is_date32, "date"),
    (pa.types.is_time, "time without time zone"),
    (lambda t: t == pa.month_day_nano_interval(), "interval"),
]


def postgres_type(arrow_type: pa.DataType) -> str:
    """Postgres type (as `format_type()` spells it) that ADBC's bulk ingest creates for an Arrow type.

    Raises:
        UnsupportedArrowTypeError: the type is not one this target maps.
    """
    if pa.types.is_timestamp(arrow_type):
        return "timestamp with time zone" if arrow_type.tz else "timestamp without time zone"
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        value_type = arrow_type.value_type
        if pa.types.is_list(value_type) or pa.types.is_large_list(value_type):
            raise UnsupportedArrowTypeError(str(arrow_type))
        return postgres_type(value_type) + "[]"
    for predicate, pg_type in _SCALAR_TYPES:
        if predicate(arrow_type):
            return pg_type
    raise UnsupportedArrowTypeError(str(arrow_type))


def compatible(table_type: str, file_type: str) -> bool:
    """Whether a column of `table_type` accepts binary COPY data of the mapped `file_type`.

    A type with a typmod takes its base type's data (numeric(p,s), timestamp(p), varchar(n): the
    typmod applies on input), and varchar/char take text (same wire format). Arrays must match
    exactly: their binary form names the element type.
    """
    if table_type == file_type:
        return True
    if table_type.endswith("[]") or file_type.endswith("[]"):
        return False
    base = _TYPMOD.sub("", table_type)
    if base == file_type:
        return True
    return file_type == "text" and base in {"character varying", "character", "bpchar"}


def quote_ident(name: str) -> str:
    """Quote a Postgres identifier (names may hold spaces, capitals and quotes)."""
    return '"' + name.replace('"', '""') + '"'
