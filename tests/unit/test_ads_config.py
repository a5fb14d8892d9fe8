"""The ads pipeline's settings, run ids, keys and cutoff: in process, no server."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from northwind_elt.core.errors import ConfigError
from northwind_elt.pipelines.ads import config

UTC = dt.UTC


def test_an_airflow_run_id_maps_to_the_same_safe_key_part_every_time() -> None:
    airflow = "scheduled__2024-01-15T12:12:00+00:00"
    assert config.run_id_from(airflow) == "scheduled__2024-01-15T12-12-00-00-00"
    assert config.run_id_from("scheduled__2024-01-15T13:12:00+00:00") != config.run_id_from(airflow)
    assert config.run_id_from("manual run/../x") == "manual-run-..-x"  # no path separator survives


@pytest.mark.parametrize("bad", ["", "   ", ".hidden", "x" * 129])
def test_a_run_id_that_cannot_name_an_object_is_refused(bad: str) -> None:
    with pytest.raises(ConfigError, match="cannot name an S3 object"):
        config.run_id_from(bad)


def test_new_run_ids_are_unique_and_safe() -> None:
    now = dt.datetime(2024, 1, 15, 12, 12, 0, 123456, tzinfo=UTC)
    first, second = config.new_run_id(now), config.new_run_id(now)
    assert first != second and first.startswith("20240115T121200123456Z-")
    assert config.run_id_from(first) == first


def test_backup_keys_follow_the_logical_day() -> None:
    keys = config.BackupKeys(dt.date(2024, 1, 15), "r1")
    assert (keys.object, keys.manifest, keys.incoming) == (
        "backup/2024-01-15/r1.jsonl",
        "backup/2024-01-15/r1.manifest.json",
        "incoming/2024-01-15/r1.jsonl",
    )


def test_the_cutoff_is_the_start_of_the_day_minus_retention() -> None:
    assert config.cutoff_for(dt.date(2024, 1, 15), dt.timedelta(hours=168)) == dt.datetime(2024, 1, 8, tzinfo=UTC)
    assert config.cutoff_for(dt.date(2024, 1, 16), dt.timedelta(hours=12)) == dt.datetime(2024, 1, 15, 12, tzinfo=UTC)


def test_archive_keys_never_repeat_for_a_retried_run() -> None:
    cutoff = dt.datetime(2024, 1, 15, 12, tzinfo=UTC)
    first, second = config.archive_key(cutoff, "r1"), config.archive_key(cutoff, "r1", 2)
    assert first == "archive/2024-01-15/api_ad_data_20240115T120000Z_r1.jsonl"
    assert second == "archive/2024-01-15/api_ad_data_20240115T120000Z_r1-2.jsonl"
    assert config.manifest_of(first) == "archive/2024-01-15/api_ad_data_20240115T120000Z_r1.manifest.json"


def test_local_servers_are_recognised_by_host() -> None:
    assert config.local_port("http://127.0.0.1:4568") == 4568
    assert config.local_port("http://localhost") == 80
    assert config.local_port("https://s3.eu-west-1.amazonaws.com") is None
    assert config.local_port(None) is None


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("ADS_RETENTION_HOURS", "0", "ADS_RETENTION_HOURS='0' is not a whole number of hours"),
        ("ADS_RETENTION_HOURS", "1.5", "ADS_RETENTION_HOURS='1.5' is not a whole number of hours"),
        ("ADS_S3_BUCKET", "Ad_Data", "ADS_S3_BUCKET='Ad_Data' is not a valid S3 bucket name"),
        ("ADS_API_URL", "127.0.0.1:8765", "ADS_API_URL='127.0.0.1:8765' is not an http(s) URL"),
        ("ADS_S3_ENDPOINT_URL", "http://127.0.0.1:s3", "has a port that is not a number"),
    ],
)
def test_a_bad_setting_is_named(monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        config.load()


def test_no_endpoint_means_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ADS_S3_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("ADS_S3_BUCKET", raising=False)
    monkeypatch.setenv("ADS_S3_REGION", "eu-west-1")
    cfg = config.load()
    assert cfg.s3_endpoint_url is None
    assert cfg.where("backup/x") == "s3://ad-data/backup/x at AWS S3 (eu-west-1)"


def test_a_load_is_recorded_under_its_run_and_checked_there(data_dir: Path) -> None:
    from northwind_elt.core import ledger
    from northwind_elt.pipelines.ads import commands
    from northwind_elt.pipelines.ads.pipeline import ADS
    from northwind_elt.protocol.attempts import succeeded_since

    keys = config.BackupKeys(dt.date(2024, 1, 15), "r1")
    since = ledger.now() - dt.timedelta(seconds=1)
    assert not succeeded_since(ADS, "ads-load", "2024-01-15/r1", since)
    commands.load_attempt(keys, None).succeeded("backup/2024-01-15/r1.jsonl: 100 lines", rows=100)
    assert succeeded_since(ADS, "ads-load", "2024-01-15/r1", since)
    assert ledger.latest("ads", "2024-01-15/r1")["ads-load"]["rows"] == 100
    assert ledger.latest("ads", "2024-01-15") == {}  # the run's, not the day's
