"""The discovered catalog, kept while what discovery reads is unchanged (setting `discovery_cache_dir`).

The key of an entry is the tap's config (`config_key`: every setting but the few that do not
change the catalog, the password left out) and the tap's code (`code_key`: its own source and
the installed distributions). An entry holds the catalog for one fingerprint of the source
(`FINGERPRINT_SQL`): one query over pg_catalog returning the digest of everything the discovery
reads of the schemas it reads (relations, kinds, partitions, SELECT privilege, columns with
type, typmod, dimensions, NOT NULL and comment, keys and indexes, domains and enum labels).
Same key and fingerprint: the catalog is the one stored; anything else (a table added, a column
dropped or retyped, a privilege revoked, another tap version) is a new discovery, stored in its
turn. A digest may change with no change to the catalog (a table dropped and created again),
never the reverse.

Standard library only, and a DB-API (psycopg2) cursor given by the caller: `tap_postgres_arrow.cli`
answers a `--discover` from here without loading the Singer SDK.
"""

from __future__ import annotations

import decimal
import hashlib
import json
import os
import sys
import typing as t
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

# Settings that never change the catalog. batch_config and failed_tables_file name a day's own
# folder, so keeping them would make every day's key new; the password does not decide what
# the role may see.
NOT_IN_KEY = frozenset({"password", "batch_config", "failed_tables_file", "discovery_cache_dir", "max_parallel_tables"})

# One row, one digest. %(schemas)s: filter_schemas, or [] for every schema the parent lists (all
# but pg_*). Each part is rendered as text and sorted bytewise, so the digest does not depend on
# the order Postgres returns rows in. Relation OIDs are in it: a table created again is a new
# discovery (harmless), and two tables swapping names cannot look unchanged.
FINGERPRINT_SQL = """
WITH schemas AS (
    SELECT n.oid, n.nspname FROM pg_catalog.pg_namespace n
    WHERE CASE WHEN cardinality(%(schemas)s::text[]) = 0 THEN n.nspname !~ '^pg_'
               ELSE n.nspname = ANY(%(schemas)s::text[]) END
), relations AS (
    SELECT c.oid, s.nspname, c.relname, c.relkind, c.relispartition,
           pg_catalog.has_table_privilege(c.oid, 'SELECT') AS readable,
           pg_catalog.obj_description(c.oid, 'pg_class') AS comment
    FROM pg_catalog.pg_class c JOIN schemas s ON s.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
), parts AS (
    SELECT 'session' AS part, concat_ws(' ', current_setting('server_version_num'), quote_ident(current_user),
           quote_ident(current_database()), quote_literal(current_setting('search_path'))) AS line
  UNION ALL
    SELECT 'schema', quote_ident(nspname) FROM schemas
  UNION ALL
    SELECT 'relation', concat_ws(' ', r.oid, quote_ident(r.nspname), quote_ident(r.relname), r.relkind,
           r.relispartition, r.readable, quote_nullable(r.comment))
    FROM relations r
  UNION ALL
    SELECT 'column', concat_ws(' ', a.attrelid, a.attnum, quote_ident(a.attname), a.atttypid, a.atttypmod,
           a.attndims, a.attnotnull, quote_literal(pg_catalog.format_type(a.atttypid, a.atttypmod)),
           quote_nullable(pg_catalog.col_description(a.attrelid, a.attnum)))
    FROM pg_catalog.pg_attribute a JOIN relations r ON r.oid = a.attrelid
    WHERE a.attnum > 0 AND NOT a.attisdropped
  UNION ALL
    SELECT 'index', concat_ws(' ', i.indrelid, i.indisprimary, i.indisunique,
           quote_literal(pg_catalog.pg_get_indexdef(i.indexrelid)))
    FROM pg_catalog.pg_index i JOIN relations r ON r.oid = i.indrelid
  UNION ALL
    SELECT 'constraint', concat_ws(' ', co.conrelid, co.contype, quote_ident(co.conname), co.conkey::text)
    FROM pg_catalog.pg_constraint co JOIN relations r ON r.oid = co.conrelid
    WHERE co.contype IN ('p', 'u')
  UNION ALL
    -- Domains and enums, all of them: the reflection resolves a column's domain, or lists an
    -- enum's labels, by name.
    SELECT 'type', concat_ws(' ', ty.oid, quote_ident(tn.nspname), quote_ident(ty.typname), ty.typtype,
           ty.typbasetype, ty.typtypmod, ty.typnotnull, ty.typelem,
           quote_nullable((SELECT string_agg(quote_literal(e.enumlabel), ',' ORDER BY e.enumsortorder)
                           FROM pg_catalog.pg_enum e WHERE e.enumtypid = ty.oid)))
    FROM pg_catalog.pg_type ty JOIN pg_catalog.pg_namespace tn ON tn.oid = ty.typnamespace
    WHERE ty.typtype IN ('d', 'e')
)
SELECT md5(string_agg(part || ' ' || line, E'\\n' ORDER BY part COLLATE "C", line COLLATE "C")) FROM parts
"""


def source_fingerprint(cursor: t.Any, schemas: t.Sequence[str]) -> str:
    """The digest of what discovery reads of `schemas` (empty: every schema), through a
    psycopg2 cursor (or any DB-API cursor of the pyformat paramstyle)."""
    cursor.execute(FINGERPRINT_SQL, {"schemas": list(schemas)})
    return cursor.fetchone()[0]


def _without_password(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = urllib.parse.quote(parts.username or "", safe="")
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}@{host}"))


def config_key(config: t.Mapping[str, t.Any]) -> str:
    """The settings that may change the catalog, as one digest (as given: defaults are the code's)."""
    kept = {name: value for name, value in config.items() if name not in NOT_IN_KEY}
    if isinstance(kept.get("sqlalchemy_url"), str):
        kept["sqlalchemy_url"] = _without_password(kept["sqlalchemy_url"])
    text = json.dumps(kept, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def code_key() -> str:
    """This package's source and every installed distribution (name and version), as one digest:
    another tap, SDK or SQLAlchemy may discover another catalog."""
    digest = hashlib.sha256(f"python {sys.version_info[:2]}".encode())
    package = Path(__file__).parent
    for source in sorted(package.glob("*.py")):
        digest.update(source.name.encode() + b"\0" + source.read_bytes() + b"\0")
    for entry in sys.path:
        if entry.endswith("site-packages") and os.path.isdir(entry):
            for name in sorted(os.listdir(entry)):
                if name.endswith((".dist-info", ".egg-info")):
                    digest.update(name.encode() + b"\0")
    return digest.hexdigest()


def load_config_files(paths: t.Sequence[str]) -> dict[str, t.Any]:
    """The config the Singer SDK builds from `--config` files: later files override earlier
    ones, numbers with a fraction read as Decimal (as the SDK reads them)."""
    config: dict[str, t.Any] = {}
    for path in paths:
        config |= json.loads(Path(path).read_text(encoding="utf-8"), parse_float=decimal.Decimal)
    return config


@dataclass(frozen=True)
class Cached:
    """A stored discovery: the catalog as the tap prints it, and what it logged choosing tables."""

    catalog: str
    notes: list[tuple[int, str]]


class DiscoveryCache:
    """One file per config and code: `{directory}/{key}.json`, holding the catalog of the last
    fingerprint discovered (written whole or not at all)."""

    def __init__(self, directory: str | os.PathLike[str], config: t.Mapping[str, t.Any]) -> None:
        key = hashlib.sha256(f"{config_key(config)} {code_key()}".encode()).hexdigest()
        self.path = Path(directory) / f"{key}.json"

    def load(self, fingerprint: str) -> Cached | None:
        try:
            entry = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(entry, dict) or entry.get("fingerprint") != fingerprint:
            return None
        return Cached(entry["catalog"], [(int(level), str(text)) for level, text in entry.get("notes", [])])

    def store(self, fingerprint: str, cached: Cached) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        entry = {"fingerprint": fingerprint, "catalog": cached.catalog, "notes": cached.notes}
        temporary.write_text(json.dumps(entry, ensure_ascii=False), encoding="utf-8")
        os.replace(temporary, self.path)
