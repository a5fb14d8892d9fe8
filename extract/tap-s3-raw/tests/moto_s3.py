"""moto's in-memory S3 server on a free port of 127.0.0.1, in a thread of the test process."""

from __future__ import annotations

import boto3
from moto.server import ThreadedMotoServer

KEYS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
REGION = "us-east-1"


class MotoS3:
    def __init__(self) -> None:
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"
        self.client = boto3.client("s3", endpoint_url=self.endpoint_url, region_name=REGION, **KEYS)

    def config(self, bucket: str, key: str, **extra: object) -> dict:
        return {"bucket": bucket, "key": key, "endpoint_url": self.endpoint_url, "region": REGION, **KEYS, **extra}

    def get(self, bucket: str, key: str) -> bytes:
        return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()

    def keys(self, bucket: str) -> list[str]:
        return [o["Key"] for o in self.client.list_objects_v2(Bucket=bucket).get("Contents", [])]

    def stop(self) -> None:
        self.server.stop()
