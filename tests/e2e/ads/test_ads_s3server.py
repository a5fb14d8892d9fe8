"""The embedded S3 server (s3rver on disk), started the way `nw ads up` starts it:
objects survive a restart, and boto3 works against it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from support import free_port

from northwind_elt.local import s3server, services
from northwind_elt.pipelines.ads.config import AdsSettings
from northwind_elt.pipelines.ads.s3 import Bucket

BUCKET = "ad-data"
REGION = "us-east-1"  # s3rver ignores the region; boto3 needs one
KEY = "archive/2024-01-15/x.jsonl"
SETTINGS = AdsSettings(
    api_url="http://127.0.0.1:1",
    api_fixture=None,
    s3_endpoint_url=None,
    s3_region=REGION,
    bucket=BUCKET,
    access_key_id=s3server.ACCESS_KEY,
    secret_access_key=s3server.SECRET_KEY,
    retention=dt.timedelta(hours=1),
    s3_data_dir=Path("/nonexistent"),
)


@pytest.fixture(scope="module")
def installed() -> None:
    s3server.install()  # no-op when s3rver 3.7.1 is already under the prefix


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NW_DATA_DIR", str(tmp_path / "nw-data"))  # where the pid and log files go
    return tmp_path


def service(port: int) -> services.Service:
    return services.Service("s3", "S3 server (s3rver)", f"http://127.0.0.1:{port}/", port)


def client(port: int):
    return boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name=REGION,
        aws_access_key_id=s3server.ACCESS_KEY,
        aws_secret_access_key=s3server.SECRET_KEY,
    )


@pytest.fixture
def server(installed: None, data: Path) -> Iterator[int]:
    port = free_port()
    services.start(service(port), s3server.command(data / "s3", port))
    yield port
    services.stop(service(port))


def test_objects_survive_a_restart(installed: None, data: Path) -> None:
    data_dir, port = data / "s3 data", free_port()
    data_dir.mkdir()
    body = b'{"ad_id": "0c5c7fd0", "ad_campaign": "__unknown"}\n' * 3
    assert "started on" in services.start(service(port), s3server.command(data_dir, port))
    try:
        assert sorted(p.name for p in data_dir.iterdir()) == []  # start creates no bucket
        bucket = Bucket(dataclasses.replace(SETTINGS, s3_endpoint_url=f"http://127.0.0.1:{port}"))
        assert bucket.ensure() is True
        assert bucket.ensure() is False
        client(port).put_object(Bucket=BUCKET, Key=KEY, Body=body)
    finally:
        assert "stopped (process" in services.stop(service(port))
    assert not services.answers(f"http://127.0.0.1:{port}/")  # really down

    services.start(service(port), s3server.command(data_dir, port))
    try:
        s3 = client(port)
        assert s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == body
        assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == [BUCKET]
    finally:
        services.stop(service(port))


def test_list_with_a_prefix(server: int) -> None:
    s3 = client(server)
    s3.create_bucket(Bucket=BUCKET)
    keys = [
        "archive/2024-01-15/a.jsonl",
        "archive/2024-01-16/b.jsonl",
        "backup/2024-01-15/run-2024-01-15T12:00:00.000001+00:00_x.jsonl",
        "backup/2024-01-15/run.manifest.json",
    ]
    for key in keys:
        s3.put_object(Bucket=BUCKET, Key=key, Body=key.encode())
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="backup/2024-01-15/")
    assert sorted(o["Key"] for o in listed["Contents"]) == keys[2:]
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="archive/")
    assert sorted(o["Key"] for o in listed["Contents"]) == keys[:2]
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="nothing/").get("Contents", []) == []
    assert s3.get_object(Bucket=BUCKET, Key=keys[2])["Body"].read() == keys[2].encode()


def test_empty_and_one_megabyte_objects_round_trip(server: int) -> None:
    s3 = client(server)
    s3.create_bucket(Bucket=BUCKET)
    big = os.urandom(1 << 20)
    for key, body in (("empty.jsonl", b""), ("big.bin", big)):
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        assert s3.head_object(Bucket=BUCKET, Key=key)["ContentLength"] == len(body)
        got = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        assert hashlib.sha256(got).hexdigest() == hashlib.sha256(body).hexdigest()


def test_a_port_held_by_another_program_is_reported(installed: None, data: Path) -> None:
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(services.ServiceError, match=f"port {port} on 127.0.0.1 is in use by another program"):
            services.start(service(port), s3server.command(data / "s3", port))
