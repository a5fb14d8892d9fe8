"""The PADAM warehouse side: apply what the incremental extract landed, and reconcile with production.

The Meltano job `padam-prepare` appends each extract to `padam_landing.entity` (the typed
tap reads production's `entity` incrementally on `created_at`, the typed target ingests the
Parquet files). `merge` then applies the landing table to `padam_raw.entity` in one
transaction:

- The tap's bookmark is inclusive (`created_at >= last value`), so every run lands the
  last row again; a regenerated month lands its rows under new `entity_id`s. Raw is keyed
  on `created_at` (unique for 1 <= C <= 1666), and the landed range [first, last]
  *replaces* raw's rows in that range: production is the truth for everything the tap read.
- Several landings can queue up (a run killed after its rows landed but before the merge):
  the newest generation of a row (highest `entity_id`, a sequence) wins.
- Every merged row is stamped with the merge's `_batch_id`, which dbt's incremental daily
  model uses to recompute exactly the days that changed.

`reconcile` compares count and sum per month between production and the warehouse. The
bookmark cannot see a month regenerated behind it (another controller) or loaded out of
order (December before January): those months are reported stale, never exported.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass

import psycopg
from psycopg import sql

from northwind_elt.core import settings, text

LANDING_SCHEMA = "padam_landing"
RAW_SCHEMA = "padam_raw"
MART_SCHEMA = "padam"
FULL_REFRESH_ENV = "NW_PADAM_FULL_REFRESH"
_LOCK_NAMESPACE = 0x50414441  # "PADA", as the generator's lock
_MERGE_LOCK = 1

RAW_DDL = f"""
CREATE SCHEMA IF NOT EXISTS {RAW_SCHEMA};
CREATE TABLE IF NOT EXISTS {RAW_SCHEMA}.entity (
    created_at timestamp without time zone PRIMARY KEY,
    value double precision NOT NULL,
    entity_id bigint NOT NULL,
    _batch_id bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS entity_batch_idx ON {RAW_SCHEMA}.entity (_batch_id);
CREATE TABLE IF NOT EXISTS {RAW_SCHEMA}.merges (
    batch_id bigserial PRIMARY KEY,
    merged_at timestamptz NOT NULL DEFAULT now(),
    full_refresh boolean NOT NULL,
    landed_rows bigint NOT NULL,
    new_rows bigint NOT NULL,
    replaced_rows bigint NOT NULL,
    range_start timestamp,
    range_end timestamp
)
"""

MONTHLY_COUNTS = """
SELECT extract(year FROM created_at)::int, extract(month FROM created_at)::int, count(*), sum(value::bigint)
FROM {table} GROUP BY 1, 2
"""


@dataclass(frozen=True)
class MergeResult:
    batch_id: int | None
    landed: int
    new: int
    replaced: int
    first: dt.datetime | None
    last: dt.datetime | None
    full_refresh: bool
    warehouse_rows: int

    def summary(self) -> str:
        if self.landed == 0:
            return f"nothing landed; the warehouse holds {text.plural(self.warehouse_rows, 'row')}"
        refresh = " (full refresh: raw replaced)" if self.full_refresh else ""
        return (
            f"merged {text.plural(self.landed, 'landed row')} from {self.first} to {self.last}{refresh}: "
            f"{text.number(self.new)} new, {text.number(self.replaced)} replaced; "
            f"the warehouse holds {text.plural(self.warehouse_rows, 'row')}"
        )


@dataclass(frozen=True)
class MonthDiff:
    year: int
    month: int
    production: tuple[int, int]  # (count, sum)
    warehouse: tuple[int, int]

    def describe(self) -> str:
        (pc, ps), (wc, ws) = self.production, self.warehouse
        return (
            f"{self.year}-{self.month:02d}: production {text.plural(pc, 'row')} (sum {text.number(ps)}), "
            f"warehouse {text.plural(wc, 'row')} (sum {text.number(ws)})"
        )


def connect(prefix: str) -> psycopg.Connection:
    conn = psycopg.connect(settings.pg_conn(prefix).conninfo())
    # Naive timestamps stay naive: no session time zone may move a row across a month.
    conn.execute("SET TIME ZONE 'UTC'")
    conn.commit()
    return conn


def ensure_raw(conn: psycopg.Connection) -> None:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_LOCK_NAMESPACE, _MERGE_LOCK))
        for statement in RAW_DDL.split(";"):
            conn.execute(statement)


def _landing_exists(conn: psycopg.Connection) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", [f"{LANDING_SCHEMA}.entity"]).fetchone()[0]


def merge(conn: psycopg.Connection, *, full_refresh: bool | None = None) -> MergeResult:
    """Apply the landing table to raw in one transaction and empty it; see the module doc."""
    if full_refresh is None:
        full_refresh = os.environ.get(FULL_REFRESH_ENV, "") == "1"
    ensure_raw(conn)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_LOCK_NAMESPACE, _MERGE_LOCK))
        landed = 0
        if _landing_exists(conn):
            # Appends wait until the merge commits: no row lands between the read and the truncate.
            conn.execute(f"LOCK TABLE {LANDING_SCHEMA}.entity IN EXCLUSIVE MODE")
            conn.execute(
                f"CREATE TEMP TABLE padam_batch ON COMMIT DROP AS "
                f"SELECT DISTINCT ON (created_at) created_at, value, entity_id "
                f"FROM {LANDING_SCHEMA}.entity ORDER BY created_at, entity_id DESC"
            )
            landed = conn.execute("SELECT count(*) FROM padam_batch").fetchone()[0]
        if landed == 0 and not full_refresh:
            total = conn.execute(f"SELECT count(*) FROM {RAW_SCHEMA}.entity").fetchone()[0]
            return MergeResult(None, 0, 0, 0, None, None, False, total)
        first, last = (None, None)
        if landed:
            first, last = conn.execute("SELECT min(created_at), max(created_at) FROM padam_batch").fetchone()
        if full_refresh:
            replaced = conn.execute(f"DELETE FROM {RAW_SCHEMA}.entity").rowcount
        else:
            replaced = conn.execute(
                f"DELETE FROM {RAW_SCHEMA}.entity WHERE created_at BETWEEN %s AND %s", (first, last)
            ).rowcount
        batch_id = conn.execute(
            f"INSERT INTO {RAW_SCHEMA}.merges (full_refresh, landed_rows, new_rows, replaced_rows, range_start, "
            f"range_end) VALUES (%s, %s, %s, %s, %s, %s) RETURNING batch_id",
            (full_refresh, landed, landed - replaced, replaced, first, last),
        ).fetchone()[0]
        if landed:
            conn.execute(
                f"INSERT INTO {RAW_SCHEMA}.entity (created_at, value, entity_id, _batch_id) "
                f"SELECT created_at, value, entity_id, %s FROM padam_batch",
                [batch_id],
            )
            conn.execute(f"TRUNCATE {LANDING_SCHEMA}.entity")
        total = conn.execute(f"SELECT count(*) FROM {RAW_SCHEMA}.entity").fetchone()[0]
    return MergeResult(batch_id, landed, landed - replaced, replaced, first, last, full_refresh, total)


def clear_landing(conn: psycopg.Connection) -> int:
    """Empty the landing table (a full refresh reads everything again); return the rows dropped."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_LOCK_NAMESPACE, _MERGE_LOCK))
        if not _landing_exists(conn):
            return 0
        dropped = conn.execute(f"SELECT count(*) FROM {LANDING_SCHEMA}.entity").fetchone()[0]
        conn.execute(f"TRUNCATE {LANDING_SCHEMA}.entity")
    return dropped


def year_to_date_counts(conn: psycopg.Connection, year: int, month: int) -> tuple[int, int] | None:
    """(count, sum) of the published year-to-date row through `month`, or None."""
    table = f"{MART_SCHEMA}.entity_stats_year_to_date"
    if conn.execute("SELECT to_regclass(%s) IS NULL", [table]).fetchone()[0]:
        return None
    row = conn.execute(
        f"SELECT count_values, sum_values FROM {table} WHERE year = %s AND month = %s", (year, month)
    ).fetchone()
    return None if row is None else (int(row[0]), int(row[1]))


def monthly_counts(conn: psycopg.Connection, table: str) -> dict[tuple[int, int], tuple[int, int]]:
    """(year, month) -> (row count, sum of value) of a table with created_at and value."""
    if conn.execute("SELECT to_regclass(%s) IS NULL", [table]).fetchone()[0]:
        return {}
    query = sql.SQL(MONTHLY_COUNTS).format(table=sql.SQL(table))
    return {(y, m): (int(c), int(s)) for y, m, c, s in conn.execute(query).fetchall()}


def mart_monthly_counts(conn: psycopg.Connection) -> dict[tuple[int, int], tuple[int, int]]:
    """(year, month) -> (count, sum) as the published monthly mart has them."""
    table = f"{MART_SCHEMA}.entity_stats_monthly"
    if conn.execute("SELECT to_regclass(%s) IS NULL", [table]).fetchone()[0]:
        return {}
    rows = conn.execute(f"SELECT year, month, count_values, sum_values FROM {table}").fetchall()
    return {(y, m): (int(c), int(s)) for y, m, c, s in rows}


def differences(
    production: dict[tuple[int, int], tuple[int, int]],
    warehouse: dict[tuple[int, int], tuple[int, int]],
    months: list[tuple[int, int]] | None = None,
) -> list[MonthDiff]:
    keys = sorted(set(production) | set(warehouse)) if months is None else months
    return [
        MonthDiff(y, m, production.get((y, m), (0, 0)), warehouse.get((y, m), (0, 0)))
        for y, m in keys
        if production.get((y, m), (0, 0)) != warehouse.get((y, m), (0, 0))
    ]
