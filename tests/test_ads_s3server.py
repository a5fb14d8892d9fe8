"""The embedded S3 server (s3rver on disk): objects survive a restart, boto3 works against it."""

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

from northwind_elt.ads import s3server
from northwind_elt.ads.config import AdsSettings
from northwind_elt.ads.s3 import Bucket

BUCKET = "ad-data"
KEY = "archive/2024-01-15/x.jsonl"
SETTINGS = AdsSettings(
    api_url="http://127.0.0.1:1",
    api_fixture=None,
    s3_endpoint_url=None,
    s3_region=s3server.REGION,
    bucket=BUCKET,
    access_key_id=s3server.ACCESS_KEY,
    secret_access_key=s3server.SECRET_KEY,
    retention=dt.timedelta(hours=1),
    s3_data_dir=Path("/nonexistent"),
)


@pytest.fixture(scope="module")
def installed() -> None:
    s3server.install()  # no-op when s3rver 3.7.1 is already under the prefix


def client(handle: s3server.Handle):
    return boto3.client(
        "s3",
        endpoint_url=handle.endpoint_url,
        region_name=s3server.REGION,
        aws_access_key_id=s3server.ACCESS_KEY,
        aws_secret_access_key=s3server.SECRET_KEY,
    )


@pytest.fixture
def server(installed: None, tmp_path: Path) -> Iterator[s3server.Handle]:
    handle = s3server.start(tmp_path / "s3", free_port())
    yield handle
    s3server.stop(handle)


def test_objects_survive_a_restart(installed: None, tmp_path: Path) -> None:
    data_dir, port = tmp_path / "s3 data", free_port()
    body = b'{"ad_id": "0c5c7fd0", "ad_campaign": "__unknown"}\n' * 3
    handle = s3server.start(data_dir, port)
    try:
        assert sorted(p.name for p in data_dir.iterdir()) == []  # start creates no bucket
        bucket = Bucket(dataclasses.replace(SETTINGS, s3_endpoint_url=handle.endpoint_url))
        assert bucket.ensure() is True
        assert bucket.ensure() is False
        client(handle).put_object(Bucket=BUCKET, Key=KEY, Body=body)
    finally:
        s3server.stop(handle)
    assert handle.proc.returncode is not None

    again = s3server.start(data_dir, port)
    try:
        s3 = client(again)
        assert s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == body
        assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == [BUCKET]
    finally:
        s3server.stop(again)


def test_list_with_a_prefix(server: s3server.Handle) -> None:
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


def test_empty_and_one_megabyte_objects_round_trip(server: s3server.Handle) -> None:
    s3 = client(server)
    s3.create_bucket(Bucket=BUCKET)
    big = os.urandom(1 << 20)
    for key, body in (("empty.jsonl", b""), ("big.bin", big)):
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        assert s3.head_object(Bucket=BUCKET, Key=key)["ContentLength"] == len(body)
        got = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        assert hashlib.sha256(got).hexdigest() == hashlib.sha256(body).hexdigest()


def test_a_busy_port_is_reported(server: s3server.Handle, tmp_path: Path) -> None:
    with pytest.raises(s3server.S3ServerError, match=f"did not start on http://127.0.0.1:{server.port}"):
        s3server.start(tmp_path / "other", server.port)
