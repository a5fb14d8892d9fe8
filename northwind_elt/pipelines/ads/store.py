"""The ads tables in Postgres, the typed insert from the landing table, and the archive's delete.

`api_ad_data` is the exercise's table with the spec's mapping decisions: `ad_campaign` is
nullable (the API's "__unknown" is not a number: NULL), `ad_scheme` is nullable jsonb (an
absent key: NULL), `shown_at` is a timestamptz converted from the epoch seconds exactly (to
the microsecond, in UTC), `inserted_at` is set by the database. `backup_key` names the S3
object each row came from. A re-delivered ad_id is skipped (ON CONFLICT DO NOTHING).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row

LANDING = "ads_landing.ads_backup"  # written by target-postgres-arrow--ads (stream ads_backup)
# One writer at a time on the ads tables: commits and archives take it for their transaction.
ADVISORY_LOCK = (0x41445300, 1)

SCHEMA = """
CREATE TABLE IF NOT EXISTS public.api_ad_data (
    ad_id       text PRIMARY KEY,
    ad_group    text NOT NULL,
    ad_campaign integer,
    ad_scheme   jsonb,
    shown_at    timestamptz NOT NULL,
    inserted_at timestamptz NOT NULL DEFAULT now(),
    backup_key  text NOT NULL
);
COMMENT ON COLUMN public.api_ad_data.ad_campaign IS 'NULL: the API said "__unknown"';
COMMENT ON COLUMN public.api_ad_data.ad_scheme IS 'NULL: the API sent no ad_scheme';
CREATE INDEX IF NOT EXISTS api_ad_data_shown_at_idx ON public.api_ad_data (shown_at);
CREATE SCHEMA IF NOT EXISTS ads_meta;
CREATE TABLE IF NOT EXISTS ads_meta.loads (
    backup_key   text PRIMARY KEY,
    run_id       text NOT NULL,
    day          date NOT NULL,
    lines        integer NOT NULL,
    sha256       text NOT NULL,
    inserted     integer NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS ads_meta.archives (
    archive_key  text PRIMARY KEY,
    run_id       text NOT NULL,
    day          date NOT NULL,
    cutoff       timestamptz NOT NULL,
    rows         integer NOT NULL,
    sha256       text NOT NULL,
    adopted      boolean NOT NULL DEFAULT false,
    committed_at timestamptz NOT NULL DEFAULT now()
);
"""

# Each landed line, typed. The epoch goes through numeric: exact to the microsecond.
_TYPED = """
    SELECT line,
           payload->>'ad_id' AS ad_id,
           payload->>'ad_group' AS ad_group,
           CASE WHEN jsonb_typeof(payload->'ad_campaign') = 'number'
                THEN (payload->>'ad_campaign')::integer END AS ad_campaign,
           payload->'ad_scheme' AS ad_scheme,
           timestamptz 'epoch'
             + round((payload->>'shown_at')::numeric * 1000000)::bigint * interval '1 microsecond' AS shown_at
    FROM {landing}
    WHERE key = %(key)s
"""
# Lines the mapping cannot take as they are: named before anything is inserted.
_UNMAPPABLE = """
    SELECT line, payload->>'ad_id'
    FROM {landing}
    WHERE key = %(key)s AND NOT (
        jsonb_typeof(payload->'ad_id') = 'string'
        AND jsonb_typeof(payload->'ad_group') = 'string'
        AND (payload->'ad_campaign' = '"__unknown"'::jsonb
             OR (jsonb_typeof(payload->'ad_campaign') = 'number'
                 AND (payload->>'ad_campaign') ~ '^[0-9]+$' AND length(payload->>'ad_campaign') <= 9))
        AND jsonb_typeof(payload->'shown_at') = 'number'
        AND (NOT payload ? 'ad_scheme' OR jsonb_typeof(payload->'ad_scheme') = 'object')
    )
    ORDER BY line
    LIMIT 5
"""


class StoreError(RuntimeError):
    pass


def connect(conninfo: str) -> psycopg.Connection:
    conn = psycopg.connect(conninfo)
    conn.execute("SET TIME ZONE 'UTC'")
    conn.commit()
    return conn


def _tables_exist(conn: psycopg.Connection) -> bool:
    found = conn.execute(
        "SELECT to_regclass('public.api_ad_data') IS NOT NULL AND to_regclass('ads_meta.loads') IS NOT NULL"
        " AND to_regclass('ads_meta.archives') IS NOT NULL"
    ).fetchone()[0]
    conn.commit()
    return bool(found)


def ensure_schema(conn: psycopg.Connection) -> None:
    """Create the tables once (DDL needs the owner role; later runs only check they exist)."""
    if _tables_exist(conn):
        return
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", ADVISORY_LOCK)
        conn.execute(SCHEMA)


def lock(conn: psycopg.Connection) -> None:
    """Inside a transaction: wait for any other ads writer (commit or archive)."""
    conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", ADVISORY_LOCK)


@dataclass(frozen=True)
class Committed:
    key: str
    lines: int
    inserted: int
    already_there: int
    first_time: bool

    def summary(self) -> str:
        if not self.first_time:
            return f"{self.key} was inserted before (ads_meta.loads); nothing inserted again"
        return (
            f"{self.key}: {self.lines} lines, {self.inserted} new rows in api_ad_data, "
            f"{self.already_there} already there (same ad_id)"
        )


def commit_backup(conn: psycopg.Connection, key: str, run_id: str, day: dt.date, lines: int, sha256: str) -> Committed:
    """Landed lines of `key` -> api_ad_data, in one transaction; the landing rows are removed."""
    ensure_schema(conn)
    landing_exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (LANDING,)).fetchone()[0]
    with conn.transaction():
        lock(conn)
        landed = 0
        if landing_exists:
            landed = conn.execute(f"SELECT count(*) FROM {LANDING} WHERE key = %s", (key,)).fetchone()[0]
        already = conn.execute("SELECT 1 FROM ads_meta.loads WHERE backup_key = %s", (key,)).fetchone()
        if already:
            # Inserted before: inserting again could bring back rows the archive has since moved out.
            conn.execute(f"DELETE FROM {LANDING} WHERE key = %s", (key,))
            return Committed(key, lines, 0, 0, first_time=False)
        if landed != lines:
            raise StoreError(
                f"{LANDING} holds {landed} lines of {key}, its manifest says {lines}; nothing was inserted"
            )
        bad = conn.execute(_UNMAPPABLE.format(landing=LANDING), {"key": key}).fetchall()
        if bad:
            named = ", ".join(f"line {line} (ad_id {ad_id!r})" for line, ad_id in bad)
            raise StoreError(
                f"{key}: {named} cannot be mapped to api_ad_data (campaign neither a whole number nor "
                '"__unknown", shown_at not a number, or ad_scheme not an object); nothing was inserted'
            )
        inserted = conn.execute(
            "INSERT INTO public.api_ad_data (ad_id, ad_group, ad_campaign, ad_scheme, shown_at, backup_key)"
            " SELECT ad_id, ad_group, ad_campaign, ad_scheme, shown_at, %(key)s"
            f" FROM ({_TYPED.format(landing=LANDING)}) typed ORDER BY line ON CONFLICT (ad_id) DO NOTHING",
            {"key": key},
        ).rowcount
        conn.execute(
            "INSERT INTO ads_meta.loads (backup_key, run_id, day, lines, sha256, inserted)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (backup_key) DO NOTHING",
            (key, run_id, day, lines, sha256, inserted),
        )
        conn.execute(f"DELETE FROM {LANDING} WHERE key = %s", (key,))
    return Committed(key, lines, inserted, lines - inserted, first_time=not already)


def committed_keys(conn: psycopg.Connection, days: list[dt.date]) -> set[str]:
    if not _tables_exist(conn):
        return set()
    rows = conn.execute("SELECT backup_key FROM ads_meta.loads WHERE day = ANY(%s)", (days,)).fetchall()
    conn.commit()
    return {key for (key,) in rows}


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def archive_line(row: dict[str, Any]) -> bytes:
    """One archived row: the table's columns in order, timestamps as ISO 8601 UTC."""
    record = {
        "ad_id": row["ad_id"],
        "ad_group": row["ad_group"],
        "ad_campaign": row["ad_campaign"],
        "ad_scheme": row["ad_scheme"],
        "shown_at": _iso(row["shown_at"]),
        "inserted_at": _iso(row["inserted_at"]),
        "backup_key": row["backup_key"],
    }
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def lock_old_rows(conn: psycopg.Connection, cutoff: dt.datetime) -> list[dict[str, Any]]:
    """Inside the caller's transaction: the rows shown before `cutoff`, locked until it ends."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT ad_id, ad_group, ad_campaign, ad_scheme, shown_at, inserted_at, backup_key"
            " FROM public.api_ad_data WHERE shown_at < %s ORDER BY shown_at, ad_id FOR UPDATE",
            (cutoff,),
        )
        return cur.fetchall()


def delete_ids(conn: psycopg.Connection, ad_ids: list[str]) -> int:
    return conn.execute("DELETE FROM public.api_ad_data WHERE ad_id = ANY(%s)", (ad_ids,)).rowcount


def record_archive(
    conn: psycopg.Connection,
    key: str,
    run_id: str,
    day: dt.date,
    cutoff: dt.datetime,
    rows: int,
    sha256: str,
    *,
    adopted: bool = False,
) -> None:
    conn.execute(
        "INSERT INTO ads_meta.archives (archive_key, run_id, day, cutoff, rows, sha256, adopted)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (archive_key) DO NOTHING",
        (key, run_id, day, cutoff, rows, sha256, adopted),
    )


def archived_keys(conn: psycopg.Connection) -> set[str]:
    return {key for (key,) in conn.execute("SELECT archive_key FROM ads_meta.archives").fetchall()}


def counts(conn: psycopg.Connection) -> dict[str, Any] | None:
    """For `nw status` (read only, no lock): rows held, loads, archived rows, newest shown_at."""
    if not _tables_exist(conn):
        return None
    row = conn.execute(
        "SELECT (SELECT count(*) FROM public.api_ad_data),"
        " (SELECT max(shown_at) FROM public.api_ad_data),"
        " (SELECT count(*) FROM ads_meta.loads),"
        " (SELECT coalesce(sum(rows), 0) FROM ads_meta.archives),"
        " (SELECT count(*) FROM ads_meta.archives WHERE rows > 0)"
    ).fetchone()
    conn.commit()
    return {"rows": row[0], "newest": row[1], "loads": row[2], "archived_rows": row[3], "archives": row[4]}
