"""S3 as the ads pipeline uses it: whole objects, written then read back, manifests last.

Every object is created with a conditional put (`If-None-Match: *`), never overwritten: of
writers racing for one key exactly one creates it, the others are refused (`put_new`). Each
object carries the sha256 of its bytes in its metadata (`x-amz-meta-sha256`), which the
integrity check reads with a HEAD instead of downloading the object.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from northwind_elt.pipelines.ads.config import AdsSettings


class S3Error(RuntimeError):
    """S3 could not be reached, refused, or holds something other than what was written."""


class ObjectExists(S3Error):
    """A conditional create found the key taken by other content: nothing was overwritten."""


def _missing(error: ClientError) -> bool:
    code = str(error.response.get("Error", {}).get("Code"))
    return (
        code in ("404", "NoSuchKey", "NotFound")
        or error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404
    )


class Bucket:
    def __init__(self, cfg: AdsSettings) -> None:
        self.cfg = cfg
        self.name = cfg.bucket
        self.client = boto3.client(
            "s3",
            endpoint_url=cfg.s3_endpoint_url,
            region_name=cfg.s3_region,
            aws_access_key_id=cfg.access_key_id,
            aws_secret_access_key=cfg.secret_access_key,
            # Few, quick retries: a job waits for an unreachable S3 seconds, not minutes.
            config=Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=5, read_timeout=60),
        )

    def _fail(self, what: str, key: str, error: Exception) -> S3Error:
        return S3Error(f"cannot {what} {self.cfg.where(key)}: {error}")

    def get(self, key: str) -> bytes | None:
        """The object's bytes, or None when there is no such object."""
        try:
            return self.client.get_object(Bucket=self.name, Key=key)["Body"].read()
        except ClientError as error:
            if _missing(error):
                return None
            raise self._fail("read", key, error) from error
        except BotoCoreError as error:
            raise self._fail("read", key, error) from error

    def exists(self, key: str) -> bool:
        return self.head(key) is not None

    def metadata(self, key: str) -> dict[str, str]:
        try:
            return self.client.head_object(Bucket=self.name, Key=key).get("Metadata", {})
        except (BotoCoreError, ClientError) as error:
            raise self._fail("read", key, error) from error

    def keys(self, prefix: str) -> list[str]:
        return sorted(self.sizes(prefix))

    def head(self, key: str) -> tuple[int, str | None] | None:
        """(size in bytes, the sha256 its writer put in its metadata, if any), or None when there is no such object."""
        try:
            found = self.client.head_object(Bucket=self.name, Key=key)
        except ClientError as error:
            if _missing(error):
                return None
            raise self._fail("read", key, error) from error
        except BotoCoreError as error:
            raise self._fail("read", key, error) from error
        return int(found.get("ContentLength", 0)), found.get("Metadata", {}).get("sha256")

    def sha256_of(self, key: str) -> str | None:
        """The object's sha256: from its metadata (one HEAD), else by reading it; None when it does not exist."""
        found = self.head(key)
        if found is None:
            return None
        if found[1]:
            return found[1]
        body = self.get(key)
        return None if body is None else hashlib.sha256(body).hexdigest()

    def sizes(self, prefix: str) -> dict[str, int]:
        """Every object under `prefix` and its size in bytes (one listing call per 1,000 objects)."""
        found: dict[str, int] = {}
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix):
                found.update((item["Key"], int(item["Size"])) for item in page.get("Contents", []))
        except (BotoCoreError, ClientError) as error:
            raise self._fail("list", prefix, error) from error
        return found

    def put_new(self, key: str, body: bytes, content_type: str) -> bool:
        """Create the object unless the key exists (never overwrite): True if created, False if
        there was one already. The put is conditional (If-None-Match: *): of writers racing for
        one key, S3 lets exactly one create it and refuses the others (412). The check before it
        only saves sending a body that would be refused. What S3 returns is read back and checked."""
        if self.exists(key):
            return False
        expected = hashlib.sha256(body).hexdigest()
        try:
            self.client.put_object(
                Bucket=self.name,
                Key=key,
                Body=body,
                ContentType=content_type,
                Metadata={"sha256": expected},
                IfNoneMatch="*",
            )
        except ClientError as error:
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status in (409, 412):  # created by someone else since the check
                return False
            raise self._fail("write", key, error) from error
        except BotoCoreError as error:
            raise self._fail("write", key, error) from error
        stored = self.get(key)
        if stored is None or hashlib.sha256(stored).hexdigest() != expected:
            got = "nothing" if stored is None else f"sha256 {hashlib.sha256(stored).hexdigest()}"
            raise S3Error(f"{self.cfg.where(key)} reads back as {got}, but sha256 {expected} was written")
        return True

    def put_once(self, key: str, body: bytes, content_type: str) -> bool:
        """put_new, where finding these very bytes there already is no error (an earlier attempt
        wrote them): True if created, False if they were there. ObjectExists when the key holds
        other bytes."""
        if self.put_new(key, body, content_type):
            return True
        found = self.sha256_of(key)
        expected = hashlib.sha256(body).hexdigest()
        if found == expected:
            return False
        raise ObjectExists(
            f"{self.cfg.where(key)} exists already with other content (sha256 {found}; this one's is {expected}); "
            "it was not overwritten"
        )

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.name, Key=key)
        except (BotoCoreError, ClientError) as error:
            raise self._fail("delete", key, error) from error

    def get_json(self, key: str) -> dict[str, Any] | None:
        raw = self.get(key)
        if raw is None:
            return None
        try:
            value = json.loads(raw)
        except ValueError as error:
            raise S3Error(f"{self.cfg.where(key)} is not JSON: {error}") from None
        if not isinstance(value, dict):
            raise S3Error(f"{self.cfg.where(key)} is not a JSON object")
        return value

    def bucket_exists(self) -> bool:
        try:
            self.client.head_bucket(Bucket=self.name)
            return True
        except ClientError as error:
            if _missing(error):
                return False
            raise self._fail("reach the bucket", "", error) from error
        except BotoCoreError as error:
            raise self._fail("reach the bucket", "", error) from error

    def create(self) -> bool:
        """Create the bucket; True if it was created, False if it exists."""
        options = {}
        if self.cfg.s3_region != "us-east-1":
            options["CreateBucketConfiguration"] = {"LocationConstraint": self.cfg.s3_region}
        try:
            self.client.create_bucket(Bucket=self.name, **options)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise self._fail("create the bucket", "", error) from error
            return False
        except BotoCoreError as error:
            raise self._fail("create the bucket", "", error) from error
        return True

    def ensure(self) -> bool:
        """Create the bucket unless it exists; True if it was created."""
        return False if self.bucket_exists() else self.create()
