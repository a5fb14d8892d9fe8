"""Where the project's shared state lives: the run ledger and the leases.

`NW_STATE_BACKEND=local` (the default): a SQLite ledger and lease files in the data directory,
as on one machine. `NW_STATE_BACKEND=postgres`: tables of the schema `nw_state` in the database
`NW_STATE_PG_*` names (on the embedded server by default), shared by every machine that runs
steps. A lease there names its host and process and expires unless renewed
(`NW_LEASE_SECONDS`, default 60): a machine that dies does not hold a day for longer, and a
live one renews it (core/lease_keeper.py) so it is never taken over.
"""

from __future__ import annotations

import functools
import os
import socket
import threading
from typing import TYPE_CHECKING

from northwind_elt.core import settings

if TYPE_CHECKING:
    import psycopg

BACKEND_ENV = "NW_STATE_BACKEND"
PREFIX = "NW_STATE_PG"
HOST_ENV = "NW_HOST_ID"
LEASE_SECONDS_ENV = "NW_LEASE_SECONDS"
SCHEMA = "nw_state"

_DDL = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {SCHEMA}.step_runs (
    id bigserial PRIMARY KEY,
    pipeline text NOT NULL,
    unit text NOT NULL,
    step text NOT NULL,
    status text NOT NULL CHECK (status IN ('success', 'failed', 'interrupted')),
    started_at text,
    finished_at text NOT NULL,
    duration_s double precision,
    rows bigint,
    error text,
    notes text,
    wall_s double precision,
    log text,
    host text
);
CREATE INDEX IF NOT EXISTS step_runs_unit_step ON {SCHEMA}.step_runs (pipeline, unit, step, id);
CREATE TABLE IF NOT EXISTS {SCHEMA}.leases (
    name text PRIMARY KEY,
    what text NOT NULL,
    host text NOT NULL,
    pid integer NOT NULL,
    started double precision NOT NULL,
    taken_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
"""


def shared() -> bool:
    """True when the state is in Postgres (any machine), False for the data directory."""
    from northwind_elt.core.errors import ConfigError

    backend = (os.environ.get(BACKEND_ENV) or "local").strip().lower()
    if backend not in ("local", "postgres"):
        raise ConfigError(
            f"{BACKEND_ENV}={backend!r}: the state backend is 'local' (the data directory) or 'postgres'",
            f"fix {BACKEND_ENV} in {settings.project_root() / '.env'}",
        )
    return backend == "postgres"


def host() -> str:
    """This machine as leases and the ledger name it: NW_HOST_ID, else its host name."""
    return os.environ.get(HOST_ENV) or socket.gethostname()


def lease_seconds() -> int:
    raw = os.environ.get(LEASE_SECONDS_ENV, "60")
    if not raw.isdigit() or int(raw) < 2:
        from northwind_elt.core.errors import ConfigError

        raise ConfigError(f"{LEASE_SECONDS_ENV}={raw!r} is not a whole number of seconds (2 or more)", "fix it in .env")
    return int(raw)


def describe() -> str:
    if shared():
        return f"{settings.describe_conn(PREFIX)}, schema {SCHEMA}"
    return str(settings.data_dir() / "ledger.sqlite")


_ready: set[str] = set()
_ready_lock = threading.Lock()


def connect() -> psycopg.Connection:
    """An autocommit connection to the state database, its tables created on first use."""
    # Imported here: with the local backend (the default) no process needs psycopg for its state.
    import psycopg
    from psycopg.rows import dict_row

    target = settings.pg_conn(PREFIX)
    try:
        conn = psycopg.connect(target.conninfo(), autocommit=True, row_factory=dict_row)
    except psycopg.OperationalError as err:
        from northwind_elt.core.errors import ConfigError
        from northwind_elt.core.ledger import redact

        first = redact(str(err).strip().splitlines()[0]) if str(err).strip() else repr(err)
        raise ConfigError(
            f"cannot reach the state database {target.describe()}: {first}",
            f"start it (nw db up for the embedded server) or fix {PREFIX}_* in .env",
        ) from None
    _create_tables(conn, target.describe())
    conn.execute(f"SET search_path TO {SCHEMA}")  # the ledger's queries name its tables alone
    return conn


def _create_tables(conn: psycopg.Connection, key: str) -> None:
    with _ready_lock:
        if key in _ready:
            return
        # One creator at a time: CREATE ... IF NOT EXISTS races between sessions.
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('northwind-elt state tables'))")
            conn.execute(_DDL)
        _ready.add(key)


@functools.cache
def _placeholders(query: str) -> str:
    """A query written for SQLite (`?`) in psycopg's style (`%s`)."""
    return query.replace("%", "%%").replace("?", "%s")


def execute(query: str, params: tuple = ()) -> list[dict]:
    """Run one statement (written with `?` placeholders) in the state database; its rows."""
    with connect() as conn:
        cursor = conn.execute(_placeholders(query), params)
        return cursor.fetchall() if cursor.description else []
