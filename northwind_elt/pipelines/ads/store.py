"""The ads tables in Postgres, the typed insert from the landing table, and the archive's delete.

`api_ad_data` is the exercise's table with the spec's mapping decisions: `ad_campaign` is
nullable (the API's "__unknown" is not a number: NULL), `ad_scheme` is nullable jsonb (an
absent key: NULL), `shown_at` is a timestamptz converted from the epoch seconds exactly (to
the microsecond, in UTC), `inserted_at` is set by the database. `backup_key` names the S3
object each row came from. A re-delivered ad_id is skipped (ON CONFLICT DO NOTHING) and named
with the backup that inserted it.

Every line of a backup is accounted for: inserted, already there, or kept in
`ads_meta.quarantine` with its line, field and reason (a duplicate ad_id within the response,
or a value api_ad_data cannot hold); the other lines are inserted all the same. A backup
whose insert keeps failing is counted in `ads_meta.insert_failures` (see `records.MAX_INSERT_FAILURES`).

`ads_meta.objects` records each S3 object that holds data as it was written (kind, day, run,
rows, bytes, sha256): verified backups, archives, kept refused responses. With the loads,
archives and failed inserts it is what `recorded_objects` returns to the integrity check
(integrity.py), which finds out when the bucket lost one of them.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import dict_row

from northwind_elt.core import text
from northwind_elt.pipelines.ads import records
from northwind_elt.pipelines.ads.records import Quarantined

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
CREATE TABLE IF NOT EXISTS ads_meta.quarantine (
    backup_key     text NOT NULL,
    line           integer NOT NULL,
    ad_id          text,
    field          text NOT NULL,
    reason         text NOT NULL,
    raw_line       text NOT NULL,
    quarantined_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (backup_key, line)
);
COMMENT ON TABLE ads_meta.quarantine IS 'Backup lines not inserted into api_ad_data, with why; raw_line as in S3';
CREATE TABLE IF NOT EXISTS ads_meta.insert_failures (
    backup_key     text PRIMARY KEY,
    day            date NOT NULL,
    run_id         text NOT NULL,
    failures       integer NOT NULL,
    last_error     text NOT NULL,
    last_failed_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE ads_meta.insert_failures IS 'Verified backups whose insert failed; held once failures reach the limit';
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
CREATE TABLE IF NOT EXISTS ads_meta.objects (
    object_key  text PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('backup', 'archive', 'refused')),
    day         date NOT NULL,
    run_id      text NOT NULL,
    rows        integer,
    bytes       bigint,
    sha256      text NOT NULL,
    replayed_as text,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE ads_meta.objects IS 'S3 objects holding data, as written (bytes, sha256): nw ads status checks them';
COMMENT ON COLUMN ads_meta.objects.replayed_as IS 'a refused response: the backup its replay inserted';
"""

# The typed value of each column that can fail to convert, from a landed line's payload.
# shown_at: the epoch in numeric (exact), rounded to the microsecond half away from zero, added
# as whole days plus the rest in microseconds: each factor stays exact in interval arithmetic
# (a bigint of microseconds times interval goes through float8 and loses digits after 2255).
_US = "round((payload->>'shown_at')::numeric * 1000000)"
TYPED = {
    "ad_campaign": "CASE WHEN jsonb_typeof(payload->'ad_campaign') = 'number'"
    " THEN (payload->>'ad_campaign')::integer END",
    "shown_at": f"timestamptz 'epoch' + div({_US}, 86400000000)::integer * interval '1 day'"
    f" + mod({_US}, 86400000000)::bigint * interval '1 microsecond'",
}
COLUMN_TYPES = {"ad_campaign": "integer", "shown_at": "timestamptz"}
_INSERT = f"""
    INSERT INTO public.api_ad_data (ad_id, ad_group, ad_campaign, ad_scheme, shown_at, backup_key)
    SELECT payload->>'ad_id', payload->>'ad_group', {TYPED["ad_campaign"]}, payload->'ad_scheme',
           {TYPED["shown_at"]}, %(key)s
    FROM {LANDING}
    WHERE key = %(key)s AND line = ANY(%(lines)s)
    ORDER BY line
    ON CONFLICT (ad_id) DO NOTHING
"""
# The kinds of object ads_meta.objects records.
BACKUP, ARCHIVE, REFUSED = "backup", "archive", "refused"
# More lines than this are not listed one by one in the commit's output (all are in the table).
SHOWN = 10


class StoreError(RuntimeError):
    pass


def connect(conninfo: str) -> psycopg.Connection:
    conn = psycopg.connect(conninfo)
    conn.execute("SET TIME ZONE 'UTC'")
    conn.commit()
    return conn


TABLES = (
    "public.api_ad_data",
    "ads_meta.loads",
    "ads_meta.archives",
    "ads_meta.quarantine",
    "ads_meta.insert_failures",
    "ads_meta.objects",
)


def _tables_exist(conn: psycopg.Connection) -> bool:
    """Every table of SCHEMA (a database made before a table was added gets it on the next write)."""
    found = conn.execute(
        "SELECT bool_and(to_regclass(name) IS NOT NULL) FROM unnest(%s::text[]) AS name", (list(TABLES),)
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
    first_time: bool
    # (line, ad_id, the backup that inserted it) of each ad_id api_ad_data held already
    already: list[tuple[int, str, str]] = field(default_factory=list)
    quarantined: list[Quarantined] = field(default_factory=list)

    @property
    def already_there(self) -> int:
        return len(self.already)

    def summary(self) -> str:
        """One line: every line of the backup accounted for."""
        if not self.first_time:
            return f"{self.key} was inserted before (ads_meta.loads); nothing inserted again"
        said = (
            f"{self.key}: {text.plural(self.lines, 'line')}, {text.plural(self.inserted, 'new row')} in api_ad_data, "
            f"{text.number(self.already_there)} already there"
        )
        if self.already:
            sources = Counter(source for _, _, source in self.already)
            named = ", ".join(
                source if len(sources) == 1 else f"{source} ({count})" for source, count in sorted(sources.items())
            )
            said += f" (same ad_id, inserted from {named})"
        said += f", {text.number(len(self.quarantined))} quarantined"
        if self.quarantined:
            said += " in ads_meta.quarantine"
        return said

    def details(self) -> list[str]:
        """A line per quarantined record (the first SHOWN), and where the rest are."""
        found = [f"quarantined {q.describe()}" for q in self.quarantined[:SHOWN]]
        if len(self.quarantined) > SHOWN:
            found.append(
                f"... and {len(self.quarantined) - SHOWN} more: "
                f"SELECT line, ad_id, field, reason FROM ads_meta.quarantine WHERE backup_key = '{self.key}'"
            )
        return found


RawLines = Callable[[], list[str]]  # the backup object's lines as S3 holds them (read only when needed)


def commit_backup(
    conn: psycopg.Connection,
    key: str,
    run_id: str,
    day: dt.date,
    lines: int,
    sha256: str,
    raw_lines: RawLines,
    *,
    size: int | None = None,
) -> Committed:
    """Landed lines of `key` -> api_ad_data, in one transaction; the landing rows are removed.

    Lines that cannot be inserted (records.classify, then the values Postgres refuses) go to
    ads_meta.quarantine in the same transaction; every other line is inserted. The backup
    object (`size` bytes, from its manifest) is recorded in ads_meta.objects unless it is already.
    """
    ensure_schema(conn)
    landing_exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (LANDING,)).fetchone()[0]
    with conn.transaction():
        lock(conn)
        landed = []
        if landing_exists:
            landed = conn.execute(
                f"SELECT line, payload::text FROM {LANDING} WHERE key = %s ORDER BY line", (key,)
            ).fetchall()
        already_loaded = conn.execute("SELECT 1 FROM ads_meta.loads WHERE backup_key = %s", (key,)).fetchone()
        if already_loaded:
            # Inserted before: inserting again could bring back rows the archive has since moved out.
            conn.execute(f"DELETE FROM {LANDING} WHERE key = %s", (key,))
            return Committed(key, lines, 0, first_time=False)
        if len(landed) != lines:
            raise StoreError(
                f"{LANDING} holds {len(landed)} lines of {key}, its manifest says {lines}; nothing was inserted"
            )
        payloads = [(line, records.parse_payload(text)) for line, text in landed]
        classified = records.classify(payloads)
        by_line = dict(payloads)
        unstorable = _unstorable(conn, key, classified.accepted, by_line)
        quarantined = sorted(classified.quarantined + unstorable, key=lambda q: q.line)
        accepted = [line for line in classified.accepted if line not in {q.line for q in unstorable}]
        already = _already_there(conn, key, accepted)
        inserted = conn.execute(_INSERT, {"key": key, "lines": accepted}).rowcount
        if inserted != len(accepted) - len(already):
            raise StoreError(
                f"{key}: {inserted} rows inserted, {len(accepted) - len(already)} expected; rolled back, "
                "nothing was inserted"
            )
        if quarantined:
            raw = raw_lines()
            if len(raw) != lines:
                raise StoreError(f"{key} holds {len(raw)} lines in S3, its manifest says {lines}; nothing was inserted")
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO ads_meta.quarantine (backup_key, line, ad_id, field, reason, raw_line)"
                    " VALUES (%s, %s, %s, %s, %s, %s)",
                    [(key, q.line, q.ad_id, q.field, q.reason, raw[q.line - 1]) for q in quarantined],
                )
        conn.execute(
            "INSERT INTO ads_meta.loads (backup_key, run_id, day, lines, sha256, inserted)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (backup_key) DO NOTHING",
            (key, run_id, day, lines, sha256, inserted),
        )
        record_object(conn, key, BACKUP, day, run_id, lines, size, sha256)
        conn.execute("DELETE FROM ads_meta.insert_failures WHERE backup_key = %s", (key,))
        conn.execute(f"DELETE FROM {LANDING} WHERE key = %s", (key,))
    return Committed(key, lines, inserted, first_time=True, already=already, quarantined=quarantined)


def _unstorable(conn: psycopg.Connection, key: str, lines: list[int], payloads: dict[int, Any]) -> list[Quarantined]:
    """The lines among `lines` whose typed values Postgres refuses (out of range), each with the
    first such field. One query when every value converts; line by line, field by field, only
    when one does not."""
    typed = ", ".join(TYPED.values())
    query = f"SELECT {typed} FROM {LANDING} WHERE key = %s AND line = ANY(%s)"
    try:
        with conn.transaction():
            conn.execute(query, (key, lines))
        return []
    except psycopg.errors.DataError:
        pass
    found = []
    for line in lines:
        for name, expression in TYPED.items():
            try:
                with conn.transaction():
                    conn.execute(f"SELECT {expression} FROM {LANDING} WHERE key = %s AND line = %s", (key, line))
            except psycopg.errors.DataError as err:
                found.append(records.unstorable(line, payloads[line], name, COLUMN_TYPES[name], _pg_message(err)))
                break
    return found


def _pg_message(err: psycopg.Error) -> str:
    return err.diag.message_primary or str(err).strip().splitlines()[0]


def _already_there(conn: psycopg.Connection, key: str, lines: list[int]) -> list[tuple[int, str, str]]:
    """Of these lines, those whose ad_id api_ad_data holds already, with the backup that inserted it."""
    return [
        tuple(row)
        for row in conn.execute(
            f"SELECT l.line, a.ad_id, a.backup_key FROM {LANDING} l"
            " JOIN public.api_ad_data a ON a.ad_id = l.payload->>'ad_id'"
            " WHERE l.key = %s AND l.line = ANY(%s) ORDER BY l.line",
            (key, lines),
        ).fetchall()
    ]


def record_insert_failure(conn: psycopg.Connection, key: str, day: dt.date, run_id: str, error: str) -> int:
    """One more failed insert of a verified backup; how many there have been."""
    ensure_schema(conn)
    with conn.transaction():
        (failures,) = conn.execute(
            "INSERT INTO ads_meta.insert_failures (backup_key, day, run_id, failures, last_error)"
            " VALUES (%s, %s, %s, 1, %s)"
            " ON CONFLICT (backup_key) DO UPDATE SET failures = ads_meta.insert_failures.failures + 1,"
            " last_error = excluded.last_error, last_failed_at = now()"
            " RETURNING failures",
            (key, day, run_id, error),
        ).fetchone()
    return failures


@dataclass(frozen=True)
class Held:
    key: str
    day: dt.date
    run_id: str
    failures: int
    last_error: str


def held(conn: psycopg.Connection, limit: int) -> list[Held]:
    """The verified backups not inserted whose insert failed `limit` times or more, oldest first."""
    if not _exists(conn, "ads_meta.insert_failures"):
        conn.commit()
        return []
    rows = conn.execute(
        "SELECT backup_key, day, run_id, failures, last_error FROM ads_meta.insert_failures"
        " WHERE failures >= %s ORDER BY day, backup_key",
        (limit,),
    ).fetchall()
    conn.commit()
    return [Held(*row) for row in rows]


def insert_failures(conn: psycopg.Connection, keys: list[str]) -> dict[str, tuple[int, str]]:
    """backup key -> (failed inserts, the last error), for the keys that failed at least once."""
    if not _exists(conn, "ads_meta.insert_failures"):
        conn.commit()
        return {}
    rows = conn.execute(
        "SELECT backup_key, failures, last_error FROM ads_meta.insert_failures WHERE backup_key = ANY(%s)", (keys,)
    ).fetchall()
    conn.commit()
    return {key: (failures, error) for key, failures, error in rows}


def committed_keys(conn: psycopg.Connection, days: list[dt.date]) -> set[str]:
    if not _exists(conn, "ads_meta.loads"):
        conn.commit()
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
    size: int | None = None,
) -> None:
    conn.execute(
        "INSERT INTO ads_meta.archives (archive_key, run_id, day, cutoff, rows, sha256, adopted)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (archive_key) DO NOTHING",
        (key, run_id, day, cutoff, rows, sha256, adopted),
    )
    record_object(conn, key, ARCHIVE, day, run_id, rows, size, sha256)


def record_object(
    conn: psycopg.Connection,
    key: str,
    kind: str,
    day: dt.date,
    run_id: str,
    rows: int | None,
    size: int | None,
    sha256: str,
) -> None:
    """An object written to S3 that holds data, as written (the first record of a key stands)."""
    conn.execute(
        "INSERT INTO ads_meta.objects (object_key, kind, day, run_id, rows, bytes, sha256)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (object_key) DO NOTHING",
        (key, kind, day, run_id, rows, size, sha256),
    )


def mark_replayed(conn: psycopg.Connection, key: str, backup_key: str) -> None:
    """A kept refused response whose replay was inserted as `backup_key`."""
    conn.execute(
        "UPDATE ads_meta.objects SET replayed_as = %s WHERE object_key = %s AND kind = %s", (backup_key, key, REFUSED)
    )


@dataclass(frozen=True)
class RecordedObject:
    """An object the database records in the bucket, and what it holds."""

    key: str
    kind: str  # BACKUP, ARCHIVE or REFUSED
    day: dt.date  # a backup's or a refused response's day; the day whose archive wrote an archive
    run_id: str
    rows: int | None  # a backup's lines, an archive's rows; None: not recorded
    bytes: int | None  # None: not recorded (written before ads_meta.objects existed)
    sha256: str | None  # None: not recorded (a failed insert of a backup verified before ads_meta.objects)
    inserted: bool = False  # a backup whose lines went to api_ad_data (ads_meta.loads)
    quarantined: int = 0  # of those lines, how many are in ads_meta.quarantine
    failures: int = 0  # a backup not inserted: its failed inserts (ads_meta.insert_failures)
    cutoff: dt.datetime | None = None  # an archive: its rows were shown before this instant
    replayed_as: str | None = None  # a refused response: the backup its replay inserted

    @property
    def only_copy(self) -> bool:
        """Whether the object holds the only copy of its data: an archive (its rows were deleted from
        api_ad_data), a backup not inserted, a refused response not replayed."""
        if self.kind == BACKUP:
            return not self.inserted
        if self.kind == REFUSED:
            return self.replayed_as is None
        return True


def recorded_objects(conn: psycopg.Connection) -> list[RecordedObject]:
    """Every object the database records in the bucket, by day: the archives, the backups (inserted,
    verified and not inserted, or whose insert failed), the kept refused responses. Read only."""
    present = {table for table in TABLES if _exists(conn, table)}
    written = {}
    if "ads_meta.objects" in present:
        for row in conn.execute(
            "SELECT object_key, kind, day, run_id, rows, bytes, sha256, replayed_as FROM ads_meta.objects"
        ).fetchall():
            written[row[0]] = row
    found: dict[str, RecordedObject] = {}
    if "ads_meta.archives" in present:
        for key, run_id, day, cutoff, rows, sha256 in conn.execute(
            "SELECT archive_key, run_id, day, cutoff, rows, sha256 FROM ads_meta.archives"
        ).fetchall():
            size = written[key][5] if key in written else None
            found[key] = RecordedObject(key, ARCHIVE, day, run_id, rows, size, sha256, cutoff=cutoff)
    quarantined: dict[str, int] = {}
    if "ads_meta.quarantine" in present:
        quarantined = dict(
            conn.execute("SELECT backup_key, count(*) FROM ads_meta.quarantine GROUP BY backup_key").fetchall()
        )
    if "ads_meta.loads" in present:
        for key, run_id, day, lines, sha256 in conn.execute(
            "SELECT backup_key, run_id, day, lines, sha256 FROM ads_meta.loads"
        ).fetchall():
            size = written[key][5] if key in written else None
            found[key] = RecordedObject(
                key, BACKUP, day, run_id, lines, size, sha256, inserted=True, quarantined=quarantined.get(key, 0)
            )
    failures: dict[str, tuple] = {}
    if "ads_meta.insert_failures" in present:
        failures = {
            row[0]: row
            for row in conn.execute("SELECT backup_key, day, run_id, failures FROM ads_meta.insert_failures").fetchall()
        }
    for key, kind, day, run_id, rows, size, sha256, replayed_as in written.values():
        if key in found:
            continue
        failed = failures[key][3] if key in failures else 0
        found[key] = RecordedObject(
            key, kind, day, run_id, rows, size, sha256, failures=failed, replayed_as=replayed_as
        )
    for key, day, run_id, failed in failures.values():
        if key not in found:
            found[key] = RecordedObject(key, BACKUP, day, run_id, None, None, None, failures=failed)
    conn.commit()
    return sorted(found.values(), key=lambda o: (o.day, o.key))


def archived_keys(conn: psycopg.Connection) -> set[str]:
    return {key for (key,) in conn.execute("SELECT archive_key FROM ads_meta.archives").fetchall()}


def _exists(conn: psycopg.Connection, table: str) -> bool:
    return bool(conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()[0])


def counts(conn: psycopg.Connection) -> dict[str, Any] | None:
    """For `nw status` (read only, no lock): rows held, loads, archived rows, newest shown_at,
    quarantined lines (in how many backups, the latest). A database made before the quarantine
    existed gets it with its next load; until then it has none."""
    if not all(_exists(conn, table) for table in TABLES[:3]):
        conn.commit()
        return None
    if not _exists(conn, "ads_meta.quarantine"):
        conn.commit()
        return {**_counts(conn), "quarantined": 0, "quarantined_backups": 0, "latest_quarantined": None}
    return _counts(conn, quarantine=True)


def _counts(conn: psycopg.Connection, quarantine: bool = False) -> dict[str, Any]:
    row = conn.execute(
        "SELECT (SELECT count(*) FROM public.api_ad_data),"
        " (SELECT max(shown_at) FROM public.api_ad_data),"
        " (SELECT count(*) FROM ads_meta.loads),"
        " (SELECT coalesce(sum(rows), 0) FROM ads_meta.archives),"
        " (SELECT count(*) FROM ads_meta.archives WHERE rows > 0)"
    ).fetchone()
    found = {"rows": row[0], "newest": row[1], "loads": row[2], "archived_rows": row[3], "archives": row[4]}
    if quarantine:
        total, backups = conn.execute("SELECT count(*), count(DISTINCT backup_key) FROM ads_meta.quarantine").fetchone()
        latest = conn.execute(
            "SELECT backup_key, line, ad_id, field, reason FROM ads_meta.quarantine"
            " ORDER BY quarantined_at DESC, backup_key DESC, line DESC LIMIT 1"
        ).fetchone()
        found |= {
            "quarantined": total,
            "quarantined_backups": backups,
            "latest_quarantined": (latest[0], Quarantined(*latest[1:])) if latest else None,
        }
    conn.commit()
    return found
