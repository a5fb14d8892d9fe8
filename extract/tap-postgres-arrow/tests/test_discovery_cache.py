"""The discovery cache (`discovery_cache_dir`): an unchanged source answers from the cache, with the
catalog a fresh discovery gives; an added table, a dropped column, a changed type or a revoked
privilege is discovered on the same run."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import psycopg
import pytest
from tap_postgres_arrow.cli import cached_discovery
from tap_postgres_arrow.discovery_cache import Cached, DiscoveryCache, source_fingerprint
from tap_postgres_arrow.tap import TapPostgresArrow

from conftest import tap_config

SCHEMA = "disc"


@pytest.fixture
def source(pg):
    """A schema of its own, as the tap's role, dropped afterwards."""
    with psycopg.connect(pg.superuser_conninfo("tapdb"), autocommit=True) as conn:
        conn.execute("SET ROLE tap")
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; CREATE SCHEMA {SCHEMA}")
        conn.execute(f"CREATE TABLE {SCHEMA}.orders (id int PRIMARY KEY, amount numeric(10,2), note varchar(20))")
        conn.execute(f"CREATE TABLE {SCHEMA}.lines (order_id int, qty int NOT NULL)")
        yield conn
        conn.execute(f"DROP SCHEMA {SCHEMA} CASCADE")


def tap(config: dict) -> TapPostgresArrow:
    """A tap of its own, on a copy of the settings (the SDK adds its defaults to the dict it is given)."""
    return TapPostgresArrow(config=copy.deepcopy(config))


def discover(config: dict) -> str:
    """The catalog text `--discover` prints (the SDK's path)."""
    return tap(config).catalog_json_text


def config_file(tmp_path: Path, config: dict) -> str:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return str(path)


def test_an_unchanged_source_answers_from_the_cache_with_the_fresh_catalog(pg, source, tmp_path):
    plain = tap_config(pg, SCHEMA)
    cached = {**plain, "discovery_cache_dir": str(tmp_path / "cache")}
    fresh = discover(plain)
    assert json.loads(fresh)["streams"], "the schema's tables are discovered"
    args = ["--config", config_file(tmp_path, cached), "--discover"]
    assert cached_discovery(args) is None  # nothing stored yet: the SDK's CLI discovers
    assert discover(cached) == fresh  # discovered, and stored
    assert list((tmp_path / "cache").iterdir()), "the catalog is stored"
    # The CLI's answer without the SDK, and the SDK's own path, both from the cache.
    assert cached_discovery(args) == fresh
    assert discover(cached) == fresh


def test_the_cache_answers_only_for_its_fingerprint(pg, source, tmp_path):
    """A stored catalog is what the tap returns for that fingerprint (not a fresh discovery), and
    nothing for any other: a discovery of the source as it is then replaces it."""
    config = {**tap_config(pg, SCHEMA), "discovery_cache_dir": str(tmp_path / "cache")}
    cache = DiscoveryCache(tmp_path / "cache", config)
    with psycopg.connect(pg.superuser_conninfo("tapdb")) as conn, conn.cursor() as cur:
        cur.execute("SET ROLE tap")
        fingerprint = source_fingerprint(cur, [SCHEMA])
    # Not what a discovery gives: one of the two tables.
    marker = json.loads(discover(tap_config(pg, SCHEMA)))
    marker["streams"] = [entry for entry in marker["streams"] if entry["tap_stream_id"] == "disc-orders"]
    cache.store(fingerprint, Cached(json.dumps(marker), []))
    assert tap(config).catalog_dict == marker
    cache.store("another fingerprint", Cached(json.dumps(marker), []))
    assert tap(config).catalog_dict != marker
    assert cache.load(fingerprint) is not None  # the fresh discovery was stored for the current one


@pytest.mark.parametrize(
    ("change", "seen"),
    [
        (f"CREATE TABLE {SCHEMA}.returns (id int, reason text)", lambda c: "disc-returns" in streams_of(c)),
        (f"ALTER TABLE {SCHEMA}.orders DROP COLUMN note", lambda c: "note" not in columns_of(c, "disc-orders")),
        (
            f"ALTER TABLE {SCHEMA}.orders ALTER COLUMN amount TYPE text",
            lambda c: columns_of(c, "disc-orders")["amount"]["type"] == ["string", "null"],
        ),
        (
            f"ALTER TABLE {SCHEMA}.orders ALTER COLUMN note TYPE varchar(40)",
            lambda c: columns_of(c, "disc-orders")["note"]["maxLength"] == 40,
        ),
        (f"REVOKE SELECT ON {SCHEMA}.lines FROM tap", lambda c: "disc-lines" not in streams_of(c)),
    ],
    ids=["added table", "dropped column", "changed type", "changed typmod", "revoked privilege"],
)
def test_a_changed_source_is_discovered_on_the_same_run(pg, source, tmp_path, change, seen):
    plain = tap_config(pg, SCHEMA)
    cached = {**plain, "discovery_cache_dir": str(tmp_path / "cache")}
    args = ["--config", config_file(tmp_path, cached), "--discover"]
    before = discover(cached)
    assert cached_discovery(args) == before
    source.execute(change)
    after = discover(plain)
    assert after != before
    assert seen(json.loads(after))
    assert cached_discovery(args) is None  # the CLI leaves it to the SDK's discovery...
    assert discover(cached) == after  # ...which finds the change, and stores it
    assert cached_discovery(args) == after


def test_a_change_the_catalog_does_not_show_still_gives_the_fresh_catalog(pg, source, tmp_path):
    """int to bigint: the JSON Schema is the same, the fingerprint is not; the answer is a fresh
    discovery's either way."""
    plain = tap_config(pg, SCHEMA)
    cached = {**plain, "discovery_cache_dir": str(tmp_path / "cache")}
    before = discover(cached)
    source.execute(f"ALTER TABLE {SCHEMA}.lines ALTER COLUMN qty TYPE bigint")
    assert discover(cached) == discover(plain) == before


def test_settings_that_shape_the_catalog_are_part_of_the_key(pg, source, tmp_path):
    base = {**tap_config(pg, SCHEMA), "discovery_cache_dir": str(tmp_path / "cache")}
    assert "disc-lines" in streams_of(json.loads(discover(base)))
    excluded = {**base, "exclude_tables": ["lines"]}
    assert "disc-lines" not in streams_of(json.loads(discover(excluded)))
    # Settings that name a day's folders or the password are not: one entry serves every day.
    other_day = {**base, "batch_config": {"storage": {"root": "file:///elsewhere"}}, "failed_tables_file": "/x.json"}
    assert DiscoveryCache(tmp_path / "cache", other_day).path == DiscoveryCache(tmp_path / "cache", base).path


def test_the_cli_leaves_other_commands_to_the_sdk(tmp_path):
    path = config_file(tmp_path, {"discovery_cache_dir": str(tmp_path), "host": "h"})
    for args in (
        ["--config", path],
        ["--config", path, "--discover", "--catalog", path],
        ["--config", "ENV", "--discover"],
        ["--about"],
        ["--discover"],
    ):
        assert cached_discovery(args) is None, args


def streams_of(catalog: dict) -> set[str]:
    return {entry["tap_stream_id"] for entry in catalog["streams"]}


def columns_of(catalog: dict, stream: str) -> dict:
    entry = next(e for e in catalog["streams"] if e["tap_stream_id"] == stream)
    return entry["schema"]["properties"]
