"""One whole-object upload to S3 and its verification by reading it back."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

CHUNK = 1 << 20


class UploadError(RuntimeError):
    """The object could not be written, or what S3 holds is not what was written."""


@dataclass(frozen=True)
class S3Settings:
    bucket: str
    endpoint_url: str | None = None
    region: str = "us-east-1"
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    create_bucket: bool = False

    @property
    def where(self) -> str:
        return self.endpoint_url or f"AWS S3 ({self.region})"

    def client(self):
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.aws_access_key_id,
            aws_secret_access_key=self.aws_secret_access_key,
            config=Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=10, read_timeout=120),
        )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _ensure_bucket(client, settings: S3Settings) -> None:
    try:
        client.head_bucket(Bucket=settings.bucket)
        return
    except ClientError as error:
        if error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") != 404:
            raise
    options = {}
    if settings.region != "us-east-1":
        options["CreateBucketConfiguration"] = {"LocationConstraint": settings.region}
    try:
        client.create_bucket(Bucket=settings.bucket, **options)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
            raise


def upload_and_verify(settings: S3Settings, key: str, path: Path) -> str:
    """put_object the whole file, then check size and sha256 of what S3 returns; the sha256."""
    url = f"s3://{settings.bucket}/{key}"
    size = path.stat().st_size
    expected = sha256_of(path)
    try:
        client = settings.client()
        if settings.create_bucket:
            _ensure_bucket(client, settings)
        with path.open("rb") as body:
            client.put_object(
                Bucket=settings.bucket,
                Key=key,
                Body=body,
                ContentLength=size,
                ContentType="application/x-ndjson",
                Metadata={"sha256": expected},
            )
        head = client.head_object(Bucket=settings.bucket, Key=key)
        stored = client.get_object(Bucket=settings.bucket, Key=key)["Body"]
        digest = hashlib.sha256()
        for chunk in stored.iter_chunks(CHUNK):
            digest.update(chunk)
    except (BotoCoreError, ClientError) as error:
        raise UploadError(f"cannot write {url} at {settings.where}: {error}") from error
    if head["ContentLength"] != size:
        raise UploadError(f"{url} at {settings.where} holds {head['ContentLength']} bytes, {size} were written")
    if digest.hexdigest() != expected:
        raise UploadError(f"{url} at {settings.where} reads back with sha256 {digest.hexdigest()}, wrote {expected}")
    return expected
