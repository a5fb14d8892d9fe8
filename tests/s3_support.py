"""The embedded S3 (SeaweedFS) for tests that put the lake in a bucket: one server for the
session, started by the `embedded_s3` fixture (tests/conftest.py) only when a test asks for it."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from support import free_port, wait_for

from northwind_elt.core.lake import Lake
from northwind_elt.local import s3server

BUCKET = "lake"
KEY = s3server.Key("lake-test", "lake-test-secret")


@dataclass
class EmbeddedS3:
    endpoint: str
    proc: subprocess.Popen

    @classmethod
    def start(cls, root: Path) -> EmbeddedS3:
        port = free_port()
        endpoint = f"http://127.0.0.1:{port}"
        with (root / "weed.out").open("wb") as log:
            proc = subprocess.Popen(
                s3server.command(root / "data", port, [KEY], root / "logs"), stdout=log, stderr=subprocess.STDOUT
            )
        server = cls(endpoint, proc)
        try:
            data = root / "data"
            wait_for(lambda: s3server.ready(endpoint, KEY, data), "the embedded S3 to take a write", proc)
            server.client().create_bucket(Bucket=BUCKET)
        except BaseException:
            server.stop()
            raise
        return server

    def stop(self) -> None:
        # SeaweedFS sometimes takes 30 s over a SIGTERM (nw s3 down kills it after 10 s too).
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def client(self):
        return s3server.client(self.endpoint, KEY)

    def lake_env(self, prefix: str) -> dict[str, str]:
        """The settings that put the lake under s3://lake/<prefix>."""
        return {
            "NW_LAKE_URL": f"s3://{BUCKET}/{prefix}",
            "NW_LAKE_S3_ENDPOINT_URL": self.endpoint,
            "NW_LAKE_S3_REGION": "us-east-1",
            "NW_LAKE_S3_ACCESS_KEY_ID": KEY.access_key_id,
            "NW_LAKE_S3_SECRET_ACCESS_KEY": KEY.secret_access_key,
        }

    def lake(self, prefix: str) -> Lake:
        return Lake(
            f"s3://{BUCKET}/{prefix}",
            {
                "endpoint_url": self.endpoint,
                "key": KEY.access_key_id,
                "secret": KEY.secret_access_key,
                "client_kwargs": {"region_name": "us-east-1"},
            },
        )

    def objects(self, prefix: str) -> dict[str, bytes]:
        """Every object under `prefix`, by its key without the prefix."""
        client = self.client()
        found = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
            for item in page.get("Contents", []):
                body = client.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
                found[item["Key"].removeprefix(prefix)] = body
        return found


def local_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
