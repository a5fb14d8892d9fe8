"""Files of different tables loaded at once (`max_parallel_tables`); STATE only once every file
handed over is committed; the first failure is the target's error. Each test synchronises on
locks held by its own connection, never on time."""

from __future__ import annotations

import io
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embedded_pg import CONFIG, DATABASE, PASSWORD, ROLE
from target_postgres_arrow.sinks import BatchLoadError
from target_postgres_arrow.target import TargetPostgresArrow

SCHEMA = CONFIG["default_target_schema"]
STATE = {"type": "STATE", "value": {"bookmarks": {"parallel": {"done": True}}}}
PATIENCE = 120  # seconds: a bound on waiting for what the test waits for, never a measurement


def schema_message(stream: str) -> dict:
    return {"type": "SCHEMA", "stream": stream, "key_properties": [], "schema": {"properties": {}}}


def batch_message(stream: str, url: str) -> dict:
    return {"type": "BATCH", "stream": stream, "encoding": {"format": "parquet"}, "manifest": [url]}


def parquet(path: Path, table: pa.Table) -> str:
    pq.write_table(table, path)
    return path.as_uri()


class _Stdout(io.StringIO):
    """The target's stdout (it writes STATE there), readable while the target runs."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.saved: list[Any] = []

    def __enter__(self) -> _Stdout:
        self.saved.append(sys.stdout)
        sys.stdout = self
        return self

    def __exit__(self, *exc: object) -> None:
        sys.stdout = self.saved.pop()

    def write(self, text: str) -> int:
        with self.lock:
            return super().write(text)

    def states(self) -> list[dict]:
        with self.lock:
            return [json.loads(line) for line in self.getvalue().splitlines() if line.strip()]


class TargetThread(threading.Thread):
    """The target listening to `messages` on a thread of its own; `error` is what it raised."""

    def __init__(self, messages: list[dict], **config: Any) -> None:
        super().__init__(daemon=True)
        self.lines = "".join(json.dumps(m) + "\n" for m in messages)
        self.config = {**CONFIG, **config}
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            TargetPostgresArrow(config=self.config, validate_config=True).listen(io.StringIO(self.lines))
        except BaseException as exc:
            self.error = exc


def until(condition, what: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while not condition():
        assert time.monotonic() < deadline, f"still not {what} after {PATIENCE} s"
        time.sleep(0.02)


def connect() -> psycopg.Connection:
    return psycopg.connect(host="127.0.0.1", port=CONFIG["port"], user=ROLE, password=PASSWORD, dbname=DATABASE)


def waiting_on(db: psycopg.Connection, query_start: str) -> int:
    """Backends of the target waiting for a lock, in a statement starting with `query_start`."""
    return db.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
        (query_start + "%",),
    ).fetchone()[0]


def rows(db: psycopg.Connection, table: str) -> int | None:
    found = db.execute("SELECT to_regclass(%s)", (f'"{SCHEMA}"."{table}"',)).fetchone()[0]
    return None if found is None else db.execute(f'SELECT count(*) FROM "{SCHEMA}"."{table}"').fetchone()[0]


@pytest.fixture
def stdout() -> _Stdout:
    """Where the target writes STATE. Swapped in by the test itself (`with stdout:`): pytest puts
    its own capture back at the start of the test's call."""
    return _Stdout()


def test_tables_load_at_once_and_state_waits_for_every_file(tmp_path: Path, db, stdout: _Stdout) -> None:
    """`held` comes first and cannot be written while this test holds its lock: `free`, after it,
    is loaded meanwhile, and STATE waits until `held` is committed too."""
    db.execute(f'CREATE SCHEMA IF NOT EXISTS "{SCHEMA}"')
    db.execute(f'DROP TABLE IF EXISTS "{SCHEMA}".held, "{SCHEMA}".free')
    db.execute(f'CREATE TABLE "{SCHEMA}".held (id bigint)')
    held = parquet(tmp_path / "held.parquet", pa.table({"id": pa.array([1, 2], pa.int64())}))
    free = parquet(tmp_path / "free.parquet", pa.table({"id": pa.array([1, 2, 3], pa.int64())}))
    messages = [schema_message("held"), batch_message("held", held)]
    messages += [schema_message("free"), batch_message("free", free), STATE]
    with stdout, connect() as lock:
        lock.execute(f'LOCK TABLE "{SCHEMA}".held IN ACCESS EXCLUSIVE MODE')
        target = TargetThread(messages, max_parallel_tables=2)
        target.start()
        until(lambda: rows(db, "free") == 3 and waiting_on(db, "COPY") == 1, "free loaded while held waits")
        assert stdout.states() == []  # held's rows are not committed: no STATE yet
        lock.rollback()  # releases the lock
        target.join(PATIENCE)
    assert not target.is_alive() and target.error is None, target.error
    assert rows(db, "held") == 2 and rows(db, "free") == 3
    assert stdout.states() == [STATE["value"]]


@pytest.mark.parametrize("workers", [1, 4])
def test_the_first_failure_is_the_targets_error_and_no_state_follows(
    tmp_path: Path, db, stdout: _Stdout, workers: int
) -> None:
    db.execute(f'CREATE SCHEMA IF NOT EXISTS "{SCHEMA}"')
    db.execute(f'DROP TABLE IF EXISTS "{SCHEMA}".clash, "{SCHEMA}".fine')
    db.execute(f'CREATE TABLE "{SCHEMA}".clash (v bigint)')
    clash = parquet(tmp_path / "clash.parquet", pa.table({"v": ["text"]}))
    fine = parquet(tmp_path / "fine.parquet", pa.table({"v": pa.array([1], pa.int64())}))
    messages = [schema_message("clash"), batch_message("clash", clash)]
    messages += [schema_message("fine"), batch_message("fine", fine), STATE]
    target = TargetThread(messages, max_parallel_tables=workers)
    with stdout:
        target.run()  # on this thread
    assert isinstance(target.error, BatchLoadError)
    assert "'clash', column 'v'" in str(target.error)
    assert rows(db, "clash") == 0
    assert stdout.states() == []


def test_a_schema_created_meanwhile_by_another_session(tmp_path: Path, db, stdout: _Stdout) -> None:
    """Two loads create the same new schema while another session creates it too: each waits
    for that session, loses the race on the schema's name, and starts its transaction again."""
    schema = "created_meanwhile"
    db.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    first = parquet(tmp_path / "first.parquet", pa.table({"id": pa.array([1], pa.int64())}))
    second = parquet(tmp_path / "second.parquet", pa.table({"id": pa.array([1, 2], pa.int64())}))
    messages = [schema_message("first"), batch_message("first", first)]
    messages += [schema_message("second"), batch_message("second", second), STATE]
    with stdout, connect() as other:
        other.execute(f'CREATE SCHEMA "{schema}"')  # not committed yet
        target = TargetThread(messages, max_parallel_tables=2, default_target_schema=schema)
        target.start()
        until(lambda: waiting_on(db, "CREATE SCHEMA") == 2, "both loads waiting on the schema")
        other.commit()
        target.join(PATIENCE)
    assert not target.is_alive() and target.error is None, target.error
    counts = [db.execute(f'SELECT count(*) FROM "{schema}"."{t}"').fetchone()[0] for t in ("first", "second")]
    assert counts == [1, 2]
    assert stdout.states() == [STATE["value"]]
    db.execute(f'DROP SCHEMA "{schema}" CASCADE')


def test_a_connection_serves_the_next_message_and_one_a_load_failed_on_is_closed(db) -> None:
    from sqlalchemy.engine import URL

    from target_postgres_arrow.adbc import adbc_uri
    from target_postgres_arrow.ingest import AdbcSessions

    uri = adbc_uri(URL.create("postgresql", ROLE, PASSWORD, "127.0.0.1", CONFIG["port"], DATABASE))
    sessions = AdbcSessions()
    try:
        with sessions.session(uri) as first, first.cursor() as cursor:
            cursor.execute("SELECT 1")
            assert cursor.fetchone() == (1,)
            first.commit()
        with sessions.session(uri) as second:
            assert second is first
        with pytest.raises(RuntimeError), sessions.session(uri) as failed:
            raise RuntimeError("a load failed")
        with sessions.session(uri) as third, third.cursor() as cursor:
            assert third is not failed
            cursor.execute("SELECT 2")
            assert cursor.fetchone() == (2,)
    finally:
        sessions.close()
