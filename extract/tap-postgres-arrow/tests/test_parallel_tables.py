"""Tables read at once (`max_parallel_tables`): the same messages in the same order, the same files
byte for byte, the same failures, as one table after another; files read ahead but never sent
are deleted."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import re
import sys
import urllib.parse
from concurrent.futures import wait
from pathlib import Path

import pytest
from tap_postgres_arrow.readahead import default_parallel_tables
from tap_postgres_arrow.tap import ExtractionFailedError, TapPostgresArrow

from conftest import capture_stdout, make_catalog, tap_config

PUBLIC = {
    "public-type_zoo": None,
    "public-Order Items": None,
    "public-../../x": None,
    "public-empty_tbl": None,
    "public-events": None,
    "public-events_num": "seq",  # INCREMENTAL: read at its turn, the others around it
}
BAD = {"bad-nan_numeric": None, "bad-inf_ts": None, "bad-multi_dim": None, "bad-fine": None, "bad-many": None}


def run(config: dict, selected: dict[str, str | None], out: Path, workers: int) -> tuple[list[dict], str | None]:
    config = {
        **copy.deepcopy(config),
        "max_parallel_tables": workers,
        "batch_config": {
            "encoding": {"format": "parquet", "compression": "none"},
            "storage": {"root": out.as_uri(), "prefix": "p-"},
        },
    }
    tap = TapPostgresArrow(config=config, catalog=make_catalog(config, selected))
    error = None
    with capture_stdout() as messages:
        try:
            tap.sync_all()
        except ExtractionFailedError as exc:
            error = str(exc)
    return messages, error


def files_of(messages: list[dict]) -> list[Path]:
    return [
        Path(urllib.parse.unquote(urllib.parse.urlparse(uri).path))
        for m in messages
        if m["type"] == "BATCH"
        for uri in m["manifest"]
    ]


def comparable(messages: list[dict], out: Path) -> list[dict]:
    """The messages with what differs between two runs by design taken out: the batch folder,
    the uuid in file names, extraction times."""
    text = json.dumps(messages).replace(out.as_uri(), "OUT")
    text = re.sub(r"-[0-9a-f]{32}-", "-UUID-", text)
    return [{k: v for k, v in m.items() if k != "time_extracted"} for m in json.loads(text)]


def digests(messages: list[dict]) -> list[str]:
    return [hashlib.sha256(path.read_bytes()).hexdigest() for path in files_of(messages)]


@pytest.mark.parametrize(("schema", "selected"), [("public", PUBLIC), ("bad", BAD)])
def test_tables_read_at_once_give_what_one_after_another_gives(pg, tmp_path, schema, selected):
    config = tap_config(pg, schema)
    one_by_one, error_one = run(config, selected, tmp_path / "one", workers=1)
    at_once, error_many = run(config, selected, tmp_path / "many", workers=4)
    assert error_one == error_many
    assert (error_one is not None) == (schema == "bad")
    assert comparable(at_once, tmp_path / "many") == comparable(one_by_one, tmp_path / "one")
    assert digests(at_once) == digests(one_by_one)  # the same Parquet bytes, file by file
    assert len(files_of(at_once)) >= (5 if schema == "public" else 1)
    # No file but the ones sent (a failed table leaves none).
    assert sorted(p.name for p in (tmp_path / "many").iterdir()) == sorted(p.name for p in files_of(at_once))


class _StopAtSecondBatch(io.RawIOBase):
    """stdout that fails on the second BATCH message (a target gone), once every table read
    ahead is done: their files exist when the run stops."""

    def __init__(self, tap: TapPostgresArrow) -> None:
        self.tap, self.batches, self.lines = tap, 0, []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        if b'"BATCH"' in bytes(data):
            self.batches += 1
            if self.batches == 2:
                wait(list(self.tap.read_ahead._reads.values()))
                raise BrokenPipeError("the target is gone")
        self.lines.append(bytes(data))
        return len(data)


def test_files_read_ahead_but_never_sent_are_deleted_when_the_run_stops(pg, tmp_path):
    out = tmp_path / "out"
    config = {
        **tap_config(pg, "public"),
        "max_parallel_tables": 4,
        "batch_config": {"encoding": {"format": "parquet"}, "storage": {"root": out.as_uri()}},
    }
    tap = TapPostgresArrow(config=config, catalog=make_catalog(config, PUBLIC))
    sink = _StopAtSecondBatch(tap)
    old, sys.stdout = sys.stdout, io.TextIOWrapper(sink, encoding="utf-8", write_through=True)
    try:
        with pytest.raises(BrokenPipeError):
            tap.sync_all()
    finally:
        sys.stdout = old
    sent = [json.loads(line) for chunk in sink.lines for line in chunk.decode().splitlines() if line.strip()]
    begun = {m["stream"] for m in sent if m["type"] == "SCHEMA"}
    assert len(begun) == 2  # the first stream sent its file; the second stopped the run
    left = [p.name for p in out.iterdir()]
    sent_files = [p.name for p in files_of(sent)]
    assert len(sent_files) == 1
    assert sent_files[0] in left
    # What remains is the two begun streams' (as in a run one table after another), nothing read ahead.
    assert len(left) == 2
    assert all(any(name.startswith(urllib.parse.quote(s, safe="")) for s in begun) for name in left), left


def test_the_default_is_sized_to_the_machine():
    assert 1 <= default_parallel_tables() <= 4


def test_a_connection_serves_the_next_table_and_one_a_read_failed_on_is_closed(pg):
    from tap_postgres.connection_parameters import ConnectionParameters
    from tap_postgres_arrow.stream import AdbcSessions, adbc_uri

    uri = adbc_uri(ConnectionParameters.from_tap_config(tap_config(pg, "public")))
    sessions = AdbcSessions(lambda: uri)
    try:
        with sessions.session() as first, first.cursor() as cur:
            cur.execute("SELECT 1")
            assert cur.fetchone() == (1,)
            first.rollback()
        with sessions.session() as second:
            assert second is first
        with pytest.raises(RuntimeError), sessions.session() as failed:
            raise RuntimeError("a read failed")
        with sessions.session() as third, third.cursor() as cur:
            assert third is not failed
            cur.execute("SELECT 2")
            assert cur.fetchone() == (2,)
    finally:
        sessions.close()
