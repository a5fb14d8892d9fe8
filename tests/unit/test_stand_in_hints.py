"""A failure to reach one of the project's own local servers names the command that starts it
(`nw db up`, `nw ads up`, `nw s3 up`), from the real error of each client (psycopg, requests,
botocore) against a port nothing listens on; anything else keeps its own fix."""

from __future__ import annotations

import datetime as dt

import boto3
import psycopg
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import BotoCoreError
from support import free_port

from northwind_elt.core import settings
from northwind_elt.core.errors import CommandError, PipelineError

DAY = dt.date(2024, 1, 15)


def refused_by_postgres(port: int) -> str:
    with pytest.raises(psycopg.OperationalError) as raised:
        psycopg.connect(host="127.0.0.1", port=port, user="x", password="x", dbname="x", connect_timeout=5)
    return str(raised.value).strip().splitlines()[0]


def refused_by_http(url: str) -> str:
    with pytest.raises(requests.ConnectionError) as raised:
        requests.get(url, timeout=5)
    return f"GET {url} failed after 3 tries: {raised.value}"  # as tap-ads-api says it


def refused_by_s3(endpoint: str) -> str:
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="k",
        aws_secret_access_key="s",
        config=Config(retries={"max_attempts": 1}, connect_timeout=5),
    )
    with pytest.raises(BotoCoreError) as raised:
        client.head_object(Bucket="ad-data", Key="backup/x.jsonl")
    return f"cannot read s3://ad-data/backup/x.jsonl at {endpoint}: {raised.value}"  # as ads.s3 says it


@pytest.fixture
def embedded_port(monkeypatch: pytest.MonkeyPatch) -> int:
    port = free_port()
    monkeypatch.setenv("PG_PORT", str(port))
    for prefix in settings.CONNECTIONS:
        monkeypatch.delenv(f"{prefix}_PORT", raising=False)
        monkeypatch.delenv(f"{prefix}_HOST", raising=False)
    return port


def test_a_refused_connection_to_the_stopped_embedded_server_says_nw_db_up_before_the_settings(
    embedded_port: int,
) -> None:
    cause = refused_by_postgres(embedded_port)
    err = PipelineError("load", DAY, cause, f"check {settings.describe_conn('ANALYTICS_PG')}")
    fix = next(line for line in err.message.splitlines() if line.startswith("Fix: "))
    assert fix.startswith(f"Fix: start the project's embedded Postgres (127.0.0.1:{embedded_port}): nw db up; ")
    assert fix.endswith(
        f"if it runs: check the analytics database postgresql://analytics@127.0.0.1:{embedded_port}/analytics "
        "(ANALYTICS_PG_* in .env)"
    )
    assert err.message.endswith("Then rerun: nw run --date 2024-01-15 --from load")


def test_a_refused_connection_to_another_server_keeps_its_own_fix(embedded_port: int) -> None:
    other = free_port()
    err = PipelineError("load", DAY, refused_by_postgres(other), "check the analytics database")
    assert "nw db up" not in err.message and "Fix: check the analytics database" in err.message


def test_a_refused_login_on_the_embedded_server_is_not_a_stopped_server(embedded_port: int) -> None:
    cause = (
        f'connection failed: connection to server at "127.0.0.1", port {embedded_port} failed: '
        'FATAL:  password authentication failed for user "analytics"'
    )
    assert settings.stand_in_fix(cause) is None
    assert "nw db up" not in PipelineError("load", DAY, cause, "check ANALYTICS_PG_PASSWORD").message


def test_the_stopped_mock_ads_api_says_nw_ads_up(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("ADS_API_URL", url)
    err = CommandError("ads load", DAY, refused_by_http(f"{url}/ads"), None, "nw ads load --date 2024-01-15")
    port = url.rsplit(":", 1)[1]
    assert f"Fix: start the project's mock ads API (127.0.0.1:{port}): nw ads up" in err.message
    # An API elsewhere is the third party's: no command of ours starts it.
    monkeypatch.setenv("ADS_API_URL", "https://ads.example.com")
    assert settings.stand_in_fix(err.cause) is None


@pytest.mark.parametrize("variable", ["ADS_S3_ENDPOINT_URL", "NW_LAKE_S3_ENDPOINT_URL"])
def test_the_stopped_embedded_s3_server_says_nw_s3_up(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    monkeypatch.delenv("ADS_S3_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("NW_LAKE_S3_ENDPOINT_URL", raising=False)
    monkeypatch.setenv(variable, endpoint)
    cause = refused_by_s3(endpoint)
    port = endpoint.rsplit(":", 1)[1]
    assert settings.stand_in_fix(cause) == f"start the project's embedded S3 server (127.0.0.1:{port}): nw s3 up"
    assert "nw s3 up" in CommandError("ads load", DAY, cause).message


def test_a_fix_that_already_names_the_command_is_not_repeated(embedded_port: int) -> None:
    fix = "start the database (nw ads up, or nw db up) or fix ADS_PG_* in .env"
    err = CommandError("ads status", None, refused_by_postgres(embedded_port), fix)
    assert f"Fix: {fix}" in err.message and err.message.count("nw db up") == 1


def test_a_broken_pg_port_does_not_hide_the_failure_being_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PG_PORT", "not-a-port")
    err = PipelineError("load", DAY, 'connection to server at "127.0.0.1", port 5432 failed: Connection refused')
    assert err.message.startswith("load for 2024-01-15: connection to server")


def test_nw_ads_status_says_how_to_start_what_it_could_not_reach(
    embedded_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from northwind_elt.pipelines.ads import commands as ads

    cause = f"cannot reach {settings.describe_conn('ADS_PG')}: {refused_by_postgres(embedded_port)}; no counts"
    line = ads._unreached(cause + "\nmore of it")
    assert line == f"{cause} -> start the project's embedded Postgres (127.0.0.1:{embedded_port}): nw db up"
    endpoint = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("ADS_S3_ENDPOINT_URL", endpoint)
    assert ads._unreached(refused_by_s3(endpoint)).endswith(f"(127.0.0.1:{endpoint.rsplit(':', 1)[1]}): nw s3 up")
    assert ads._unreached("the bucket ad-data holds no object") == "the bucket ad-data holds no object"
