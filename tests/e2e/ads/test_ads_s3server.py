"""The embedded S3 server (SeaweedFS on disk), started the way `nw s3 up` and `nw ads up` start it:
objects survive a restart, boto3 works against it, and it accepts only the keys it was given."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError
from support import free_port

from northwind_elt.local import s3server, services
from northwind_elt.pipelines.ads.config import AdsSettings
from northwind_elt.pipelines.ads.s3 import Bucket

BUCKET = "ad-data"
REGION = "us-east-1"  # SeaweedFS ignores the region; boto3 needs one
KEY = "archive/2024-01-15/x.jsonl"
ACCESS = s3server.Key(s3server.DEFAULT_ACCESS_KEY, s3server.DEFAULT_SECRET_KEY)
SETTINGS = AdsSettings(
    api_url="http://127.0.0.1:1",
    api_fixture=None,
    s3_endpoint_url=None,
    s3_region=REGION,
    bucket=BUCKET,
    access_key_id=ACCESS.access_key_id,
    secret_access_key=ACCESS.secret_access_key,
    retention=dt.timedelta(hours=1),
    s3_data_dir=Path("/nonexistent"),
)


@dataclasses.dataclass(frozen=True)
class Embedded:
    port: int
    data_dir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def service(self) -> services.Service:
        return services.Service(
            "s3",
            "S3 server (SeaweedFS)",
            f"{self.url}/",
            self.port,
            ready=lambda: s3server.ready(self.url, ACCESS, self.data_dir),
        )

    def command(self) -> list[str]:
        return s3server.command(self.data_dir, self.port, [ACCESS], self.data_dir.parent / "s3-logs")

    def start(self) -> str:
        return services.start(self.service, self.command)

    def stop(self) -> str:
        return services.stop(self.service)


def client(port: int, key: s3server.Key = ACCESS):
    return boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name=REGION,
        aws_access_key_id=key.access_key_id,
        aws_secret_access_key=key.secret_access_key,
    )


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NW_DATA_DIR", str(tmp_path / "nw-data"))  # where the pid and log files go
    return tmp_path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """One server with the bucket for the tests that only read and write objects."""
    root = tmp_path_factory.mktemp("s3server")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("NW_DATA_DIR", str(root / "nw-data"))
        embedded = Embedded(free_port(), root / "s3")
        embedded.start()
        try:
            client(embedded.port).create_bucket(Bucket=BUCKET)
            yield embedded.port
        finally:
            embedded.stop()


def test_objects_survive_a_restart(data: Path) -> None:
    embedded = Embedded(free_port(), data / "s3 data")
    body = b'{"ad_id": "0c5c7fd0", "ad_campaign": "__unknown"}\n' * 3
    assert "started on" in embedded.start()
    try:
        assert client(embedded.port).list_buckets()["Buckets"] == []  # start creates no bucket
        bucket = Bucket(dataclasses.replace(SETTINGS, s3_endpoint_url=embedded.url))
        assert bucket.ensure() is True
        assert bucket.ensure() is False
        client(embedded.port).put_object(Bucket=BUCKET, Key=KEY, Body=body)
    finally:
        assert "stopped (process" in embedded.stop()
    assert not services.answers(f"{embedded.url}/")  # really down

    embedded.start()
    try:
        s3 = client(embedded.port)
        assert s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == body
        assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == [BUCKET]
    finally:
        embedded.stop()


def test_list_with_a_prefix(server: int) -> None:
    s3 = client(server)
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
    big = os.urandom(1 << 20)
    for key, body in (("empty.jsonl", b""), ("big.bin", big)):
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        assert s3.head_object(Bucket=BUCKET, Key=key)["ContentLength"] == len(body)
        got = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        assert hashlib.sha256(got).hexdigest() == hashlib.sha256(body).hexdigest()


def test_only_the_keys_it_was_given_are_accepted(server: int, tmp_path_factory: pytest.TempPathFactory) -> None:
    for other, code in (
        (s3server.Key("S3RVER", "S3RVER"), "InvalidAccessKeyId"),  # s3rver's built-in account
        (s3server.Key(ACCESS.access_key_id, "not-the-secret"), "SignatureDoesNotMatch"),
    ):
        with pytest.raises(ClientError) as refused:
            client(server, other).list_objects_v2(Bucket=BUCKET)
        assert refused.value.response["Error"]["Code"] == code
    # The identities file holds secrets: its owner only.
    identities = next(tmp_path_factory.getbasetemp().glob(f"s3server*/s3/{s3server.IDENTITIES_FILE}"))
    assert stat.S_IMODE(identities.stat().st_mode) == 0o600


def test_an_upload_never_creates_a_bucket(server: int) -> None:
    with pytest.raises(ClientError) as refused:
        client(server).put_object(Bucket="no-such-bucket", Key="k", Body=b"x")
    assert refused.value.response["Error"]["Code"] == "NoSuchBucket"
    assert "no-such-bucket" not in [b["Name"] for b in client(server).list_buckets()["Buckets"]]


def test_what_s3rver_left_in_the_data_directory_is_imported_once(
    server: int, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # s3rver 3.7.1's layout: <dir>/<bucket>/<key>._S3rver_object, metadata beside it.
    data_dir = next(tmp_path_factory.getbasetemp().glob("s3server*/s3"))
    old = data_dir / "old-archive" / "archive" / "2024-01-15"
    old.mkdir(parents=True)
    body = b'{"ad_id": "0c5c7fd0"}\n'
    (old / "x.jsonl._S3rver_object").write_bytes(body)
    (old / "x.jsonl._S3rver_object.md5").write_text(hashlib.md5(body).hexdigest())
    metadata = {"content-type": "application/x-ndjson", "x-amz-meta-sha256": hashlib.sha256(body).hexdigest()}
    (old / "x.jsonl._S3rver_metadata.json").write_text(json.dumps(metadata))
    (old / "empty.jsonl._S3rver_object").write_bytes(b"")

    lines = s3server.import_s3rver(data_dir, f"http://127.0.0.1:{server}", ACCESS)
    kept = data_dir / s3server.S3RVER_IMPORTED / "old-archive"
    assert lines == [f"imported 2 objects of s3rver into s3://old-archive (its files kept in {kept})"]
    s3 = client(server)
    got = s3.get_object(Bucket="old-archive", Key="archive/2024-01-15/x.jsonl")
    assert got["Body"].read() == body
    assert got["Metadata"] == {"sha256": hashlib.sha256(body).hexdigest()}
    assert got["ContentType"] == "application/x-ndjson"
    assert s3.get_object(Bucket="old-archive", Key="archive/2024-01-15/empty.jsonl")["Body"].read() == b""
    assert (kept / "archive" / "2024-01-15" / "x.jsonl._S3rver_object").read_bytes() == body
    assert not (data_dir / "old-archive").exists()
    assert s3server.import_s3rver(data_dir, f"http://127.0.0.1:{server}", ACCESS) == []  # nothing left to import


def test_the_server_accepts_each_configured_key_pair_once_and_refuses_half_a_pair() -> None:
    env = {
        "ADS_S3_ACCESS_KEY_ID": "northwind",
        "ADS_S3_SECRET_ACCESS_KEY": "northwind-local",
        "NW_LAKE_S3_ACCESS_KEY_ID": "lake",
        "NW_LAKE_S3_SECRET_ACCESS_KEY": "lake-secret",
    }
    assert s3server.keys_from_env(["ADS_S3", "NW_LAKE_S3", "UNSET"], env) == [
        s3server.Key("northwind", "northwind-local"),
        s3server.Key("lake", "lake-secret"),
    ]
    same = {**env, "NW_LAKE_S3_ACCESS_KEY_ID": "northwind", "NW_LAKE_S3_SECRET_ACCESS_KEY": "northwind-local"}
    assert s3server.keys_from_env(["ADS_S3", "NW_LAKE_S3"], same) == [s3server.Key("northwind", "northwind-local")]
    with pytest.raises(
        s3server.S3ServerError, match="NW_LAKE_S3_ACCESS_KEY_ID is set but NW_LAKE_S3_SECRET_ACCESS_KEY"
    ):
        s3server.keys_from_env(["NW_LAKE_S3"], {"NW_LAKE_S3_ACCESS_KEY_ID": "lake"})
    with pytest.raises(s3server.S3ServerError, match="'northwind' is set twice with different secrets"):
        s3server.keys_from_env(["ADS_S3", "NW_LAKE_S3"], {**same, "NW_LAKE_S3_SECRET_ACCESS_KEY": "other"})
    with pytest.raises(s3server.S3ServerError, match="needs at least one key"):
        s3server.identities([])
    assert "northwind-local" not in repr(s3server.Key("northwind", "northwind-local"))  # no secret in messages


def test_a_port_held_by_another_program_is_reported(data: Path) -> None:
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(services.ServiceError, match=f"port {port} on 127.0.0.1 is in use by another program"):
            Embedded(port, data / "s3").start()
