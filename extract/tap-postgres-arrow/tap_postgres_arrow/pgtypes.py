"""Postgres column types -> the SELECT expression and Arrow type that keep every value exact.

Rule: a column is read as-is when ADBC's COPY BINARY decoding of its type is exact (integers,
floats, bool, date, timestamp[tz], time, bytea, text/varchar/char and 1-D arrays of those);
numeric(p,s) is read as-is and cast in Arrow to decimal(p,s); every other type is read as its
canonical Postgres text (``"col"::text``, arrays ``"col"::text[]``).  Each column keeps the
exact Postgres type in the Arrow field metadata ``pg_type`` so a loader can re-create it.

Values that the native Arrow types cannot hold (±infinity dates/timestamps, timestamps past
Arrow's int64-microsecond range, time 24:00:00, multi-dimensional arrays) are detected by guard
expressions evaluated by Postgres in the same query; the table then fails, naming the column.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass

# Built-in type OIDs (fixed in every Postgres release).
BOOL, BYTEA, INT8, INT2, INT4, TEXT = 16, 17, 20, 21, 23, 25
FLOAT4, FLOAT8, BPCHAR, VARCHAR = 700, 701, 1042, 1043
DATE, TIME, TIMESTAMP, TIMESTAMPTZ = 1082, 1083, 1114, 1184
NUMERIC, MONEY = 1700, 790

NATIVE_SCALARS = frozenset(
    {BOOL, BYTEA, INT8, INT2, INT4, TEXT, FLOAT4, FLOAT8, BPCHAR, VARCHAR, DATE, TIME, TIMESTAMP, TIMESTAMPTZ}
)

# Largest timestamp whose microseconds since 1970 fit in int64 (what Arrow timestamp[us] holds).
_MAX_ARROW_TS = "294247-01-10 04:00:54.775807"

# Guard templates per native temporal type: {v} is the value expression; true = not representable.
_TEMPORAL_GUARDS: dict[int, tuple[str, str]] = {
    DATE: ("NOT isfinite({v})", "holds ±infinity, which Arrow date32 cannot represent"),
    TIMESTAMP: (
        f"NOT (isfinite({{v}}) AND {{v}} <= TIMESTAMP '{_MAX_ARROW_TS}')",
        "holds ±infinity or a timestamp past Arrow's int64-microsecond range",
    ),
    TIMESTAMPTZ: (
        f"NOT (isfinite({{v}}) AND {{v}} <= TIMESTAMPTZ '{_MAX_ARROW_TS}+00')",
        "holds ±infinity or a timestamp past Arrow's int64-microsecond range",
    ),
    TIME: ("{v} = TIME '24:00:00'", "holds 24:00:00, which Arrow time64 cannot represent"),
}

# pg_catalog query: one row per live column, domains resolved (recursively) to their base type.
CATALOG_SQL = """
WITH RECURSIVE cols AS (
    SELECT a.attnum, a.attname, a.atttypid AS typid, a.atttypmod AS typmod, 0 AS depth
    FROM pg_catalog.pg_attribute a
    JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = :schema AND c.relname = :table AND a.attnum > 0 AND NOT a.attisdropped
  UNION ALL
    SELECT cols.attnum, cols.attname, t.typbasetype, t.typtypmod, cols.depth + 1
    FROM cols JOIN pg_catalog.pg_type t ON t.oid = cols.typid
    WHERE t.typtype = 'd'
)
SELECT DISTINCT ON (cols.attnum)
    cols.attname,
    pg_catalog.format_type(cols.typid, cols.typmod) AS format_type,
    cols.typid::int8 AS typid,
    cols.typmod,
    t.typname,
    t.typtype,
    t.typcategory,
    t.typnamespace = 'pg_catalog'::regnamespace AS in_pg_catalog,
    CASE WHEN e.typarray = t.oid THEN e.oid::int8 END AS elem_typid,
    CASE WHEN e.typarray = t.oid THEN e.typnamespace = 'pg_catalog'::regnamespace END AS elem_in_pg_catalog
FROM cols
JOIN pg_catalog.pg_type t ON t.oid = cols.typid
LEFT JOIN pg_catalog.pg_type e ON e.oid = t.typelem
ORDER BY cols.attnum, cols.depth DESC
"""


class ColumnValueError(ValueError):
    """A value that the column's Arrow type cannot hold; names the column and its type."""

    def __init__(self, column: str, pg_type: str, problem: str) -> None:
        self.column, self.pg_type, self.problem = column, pg_type, problem
        super().__init__(f"column {column} {pg_type}: {problem}")


@dataclass(frozen=True)
class PgColumn:
    """A column as pg_catalog describes it (domains already resolved to their base type)."""

    name: str
    format_type: str
    typid: int
    typmod: int
    typname: str
    typtype: str
    typcategory: str
    in_pg_catalog: bool
    elem_typid: int | None = None
    elem_in_pg_catalog: bool | None = None

    @classmethod
    def from_row(cls, row: t.Mapping[str, t.Any]) -> PgColumn:
        return cls(**{k: row[k] for k in cls.__dataclass_fields__ if k != "name"}, name=row["attname"])


@dataclass(frozen=True)
class Guard:
    """A boolean SQL expression that is true for a value the Arrow column could not hold."""

    sql: str
    problem: str


@dataclass(frozen=True)
class ColumnPlan:
    """How one column is selected, typed and described."""

    column: PgColumn
    select_sql: str
    pg_type: str
    decimal: tuple[int, int] | None = None  # (precision, scale) to cast the numeric text to
    guards: tuple[Guard, ...] = ()


def quote_ident(name: str) -> str:
    """Quote an SQL identifier (any characters, including quotes and dots)."""
    if "\x00" in name:
        msg = f"identifier contains a NUL character: {name!r}"
        raise ValueError(msg)
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """Quote a string literal (the session runs with standard_conforming_strings = on)."""
    if "\x00" in text:
        msg = f"literal contains a NUL character: {text!r}"
        raise ValueError(msg)
    return "'" + text.replace("'", "''") + "'"


def numeric_precision_scale(typmod: int) -> tuple[int, int] | None:
    """Decode numeric's typmod (scale is an 11-bit signed field since Postgres 15)."""
    if typmod < 4:
        return None
    raw = typmod - 4
    precision = (raw >> 16) & 0xFFFF
    scale = raw & 0x7FF
    if scale & 0x400:
        scale -= 0x800
    return precision, scale


def decimal_bounds(typmod: int) -> tuple[int, int] | None:
    """(p, s) when numeric(p,s) maps exactly onto an Arrow decimal that Parquet can store."""
    ps = numeric_precision_scale(typmod)
    if ps is None:
        return None
    precision, scale = ps
    if 1 <= precision <= 76 and 0 <= scale <= precision:
        return precision, scale
    return None


def plan_column(col: PgColumn) -> ColumnPlan:
    """Choose the SELECT expression, Arrow conversion and pg_type of one column."""
    ident = quote_ident(col.name)
    if col.typid in NATIVE_SCALARS:
        guards: tuple[Guard, ...] = ()
        if col.typid in _TEMPORAL_GUARDS:
            sql, problem = _TEMPORAL_GUARDS[col.typid]
            guards = (Guard(sql.format(v=ident), problem),)
        return ColumnPlan(col, ident, col.format_type, guards=guards)
    if col.typid == NUMERIC and (bounds := decimal_bounds(col.typmod)):
        return ColumnPlan(col, ident, col.format_type, decimal=bounds)
    if col.elem_typid is not None:  # a true array type
        pg_type = col.format_type if col.elem_in_pg_catalog else "text[]"
        if col.elem_typid not in NATIVE_SCALARS:
            return ColumnPlan(col, f"{ident}::text[]", pg_type)
        guards = (Guard(f"array_ndims({ident}) > 1", "holds a multi-dimensional array"),)
        if col.elem_typid in _TEMPORAL_GUARDS:
            sql, problem = _TEMPORAL_GUARDS[col.elem_typid]
            elem_sql = f"EXISTS (SELECT 1 FROM unnest({ident}) AS _e(v) WHERE {sql.format(v='_e.v')})"
            guards += (Guard(elem_sql, "has an element that " + problem),)
        return ColumnPlan(col, ident, pg_type, guards=guards)
    if col.typid == MONEY:  # money::text is locale-formatted ("$1,234.56"): use the plain number
        return ColumnPlan(col, f"{ident}::numeric::text", col.format_type)
    user_defined = not col.in_pg_catalog or col.typtype in {"e", "c"}
    return ColumnPlan(col, f"{ident}::text", "text" if user_defined else col.format_type)


def _rows_sql(
    select: str, schema: str, table: str, where: t.Sequence[str], order_by: str | None, limit: int | None, only: bool
) -> str:
    sql = f"SELECT {select} FROM {'ONLY ' if only else ''}{quote_ident(schema)}.{quote_ident(table)}"
    if where:
        sql += " WHERE " + " AND ".join(f"({w})" for w in where)
    if order_by:
        sql += f" ORDER BY {order_by}"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return sql


def build_select(
    schema: str,
    table: str,
    plans: t.Sequence[ColumnPlan],
    *,
    where: t.Sequence[str] = (),
    order_by: str | None = None,
    limit: int | None = None,
    only: bool = False,
) -> str:
    """SELECT the planned columns, then one boolean column per guard (after the data columns).

    `only`: FROM ONLY, for a table that others inherit from (their rows are theirs)."""
    items = [f"{p.select_sql} AS {quote_ident(p.column.name)}" for p in plans]
    items += [f"({g.sql}) AS {quote_ident(f'__guard_{i}')}" for i, g in enumerate(g for p in plans for g in p.guards)]
    return _rows_sql(", ".join(items) or "NULL", schema, table, where, order_by, limit, only)


@dataclass(frozen=True)
class Check:
    """One way a column's values can fail its Arrow type: true for a value it cannot hold."""

    plan: ColumnPlan
    sql: str
    problem: str


def diagnosis_checks(plans: t.Sequence[ColumnPlan]) -> list[Check]:
    """Every check a column's values must pass: its guards, and no NaN in a numeric(p,s) (the one
    value such a column holds that no Arrow decimal can)."""
    checks = [Check(p, g.sql, g.problem) for p in plans for g in p.guards]
    for plan in plans:
        if plan.decimal:
            precision, scale = plan.decimal
            arrow = f"decimal{128 if precision <= 38 else 256}({precision}, {scale})"
            ident = quote_ident(plan.column.name)
            checks.append(Check(plan, f"{ident} = 'NaN'::numeric", f"holds NaN, which Arrow {arrow} cannot represent"))
    order = {id(p): i for i, p in enumerate(plans)}
    return sorted(checks, key=lambda c: order[id(c.plan)])


def build_diagnosis(
    schema: str,
    table: str,
    checks: t.Sequence[Check],
    *,
    where: t.Sequence[str] = (),
    order_by: str | None = None,
    limit: int | None = None,
    only: bool = False,
) -> str:
    """One row: for each check, whether any row the read selects fails it (a single scan)."""
    found = ", ".join(f"coalesce(bool_or({c.sql}), false)" for c in checks)
    if limit is None:
        return _rows_sql(found, schema, table, where, None, None, only)
    rows = _rows_sql("*", schema, table, where, order_by, limit, only)
    return f"SELECT {found} FROM ({rows}) AS _rows"
