"""Does an S3 endpoint honour what the project relies on? Run against any endpoint, embedded or real.

The lake's commits and the ads pipeline's backups, manifests and archives are created with a
conditional put (`If-None-Match: *`): the first writer wins, every other one is refused (412).
A server that ignores the header lets every writer "win", silently, by overwriting; that is
worse than one that refuses it. So `check()` writes under a scratch prefix of the bucket
(removed after) and verifies:
- a put, head, get, list and delete round trip of one object (bytes, size, user metadata);
- `If-None-Match: *` on an existing key is refused, and the object is unchanged;
- WRITERS threads racing to create one new key: exactly one wins, the others are refused;
- `If-Match` with a stale ETag is refused, with the current one accepted.
Each failure is one sentence naming the server, the object and what cannot be trusted.

`write_marker` / `read_marker` check that objects survive a restart (the caller restarts).
"""

from __future__ import annotations

import hashlib
import os
import threading
import uuid
from dataclasses import dataclass

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

WRITERS = 16
SCRATCH = "nw-s3-check/"  # the prefix check() writes under, a fresh folder per run
REFUSED = (409, 412)  # 412 PreconditionFailed; AWS answers 409 to a create racing an in-flight one


@dataclass(frozen=True)
class Target:
    """An S3 bucket as a client reaches it. No endpoint: AWS."""

    endpoint_url: str | None
    region: str
    bucket: str
    access_key_id: str | None
    secret_access_key: str | None

    @property
    def server(self) -> str:
        return self.endpoint_url or f"AWS S3 ({self.region})"

    def url(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{key}"

    def client(self):
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            # No retries: a retried conditional put would count a writer twice.
            config=Config(
                retries={"max_attempts": 1},
                connect_timeout=5,
                read_timeout=60,
                max_pool_connections=WRITERS + 4,
            ),
        )


def _status(error: ClientError) -> int | None:
    return error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")


def _describe(error: Exception) -> str:
    if isinstance(error, ClientError):
        info = error.response.get("Error", {})
        return f"{_status(error)} {info.get('Code', '')}: {info.get('Message', '')}".strip().rstrip(":")
    return str(error)


class _Failed(Exception):
    """A step of a check could not run: its sentence is the check's failure."""


class _Checker:
    def __init__(self, target: Target, writers: int) -> None:
        self.target = target
        self.s3 = target.client()
        self.bucket = target.bucket
        self.at = f"the S3 server at {target.server}"
        self.writers = writers
        self.prefix = f"{SCRATCH}{uuid.uuid4().hex}/"

    def call(self, what: str, key: str, method: str, **kwargs):
        try:
            return getattr(self.s3, method)(Bucket=self.bucket, Key=key, **kwargs)
        except (BotoCoreError, ClientError) as error:
            raise _Failed(f"{self.at} failed to {what} {self.target.url(key)}: {_describe(error)}") from None

    def read(self, key: str) -> bytes:
        return self.call("read", key, "get_object")["Body"].read()

    def reachable(self) -> str | None:
        try:
            self.s3.head_bucket(Bucket=self.bucket)
            return None
        except ClientError as error:
            if _status(error) == 404:
                return f"the bucket {self.target.url()} does not exist at {self.target.server}"
            return f"{self.at} refuses access to the bucket {self.target.url()}: {_describe(error)}"
        except BotoCoreError as error:
            return f"cannot reach {self.at}: {_describe(error)}"

    def round_trip(self) -> list[str]:
        key, body = f"{self.prefix}round-trip.bin", os.urandom(4096)
        digest = hashlib.sha256(body).hexdigest()
        self.call("write", key, "put_object", Body=body, Metadata={"sha256": digest})
        failures = []
        head = self.call("read the head of", key, "head_object")
        if head.get("ContentLength") != len(body) or head.get("Metadata", {}).get("sha256") != digest:
            failures.append(
                f"{self.at} describes {self.target.url(key)} as {head.get('ContentLength')} bytes with metadata "
                f"{head.get('Metadata')}, but {len(body)} bytes with sha256 {digest} were written"
            )
        if self.read(key) != body:
            failures.append(f"{self.at} returns other bytes for {self.target.url(key)} than were written")
        listed = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix).get("Contents", [])
        if [(o["Key"], o["Size"]) for o in listed] != [(key, len(body))]:
            failures.append(
                f"{self.at} lists {[(o['Key'], o['Size']) for o in listed]} under {self.target.url(self.prefix)}, "
                f"but only {key} ({len(body)} bytes) is there"
            )
        self.call("delete", key, "delete_object")
        try:
            self.s3.head_object(Bucket=self.bucket, Key=key)
            failures.append(f"{self.at} still has {self.target.url(key)} after deleting it")
        except ClientError as error:
            if _status(error) != 404:
                failures.append(f"{self.at} failed to read the head of {self.target.url(key)}: {_describe(error)}")
        return failures

    def if_none_match_on_existing(self) -> list[str]:
        key = f"{self.prefix}existing.txt"
        self.call("write", key, "put_object", Body=b"first")
        try:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=b"second", IfNoneMatch="*")
        except ClientError as error:
            if _status(error) in REFUSED and self.read(key) == b"first":
                return []
            if _status(error) in REFUSED:
                return [f"{self.at} refused a conditional create of the existing {self.target.url(key)} but changed it"]
            return [
                f"{self.at} cannot do a conditional create (If-None-Match: *) of {self.target.url(key)}: "
                f"{_describe(error)}; write-once commits cannot be made on it"
            ]
        except BotoCoreError as error:
            raise _Failed(f"{self.at} failed to write {self.target.url(key)}: {_describe(error)}") from None
        overwritten = self.read(key) == b"second"
        return [
            f"{self.at} ignores If-None-Match: a conditional create of the existing {self.target.url(key)} succeeded"
            + (" and overwrote it" if overwritten else "")
            + "; a write-once commit cannot be trusted on it"
        ]

    def racing_creates(self) -> list[str]:
        key = f"{self.prefix}race.txt"
        start = threading.Barrier(self.writers)
        outcomes: dict[int, str] = {}  # writer -> "won", "refused" or what went wrong
        lock = threading.Lock()

        def write(writer: int) -> None:
            start.wait()  # every request in flight together, however slowly the threads start
            try:
                self.s3.put_object(Bucket=self.bucket, Key=key, Body=f"writer {writer}".encode(), IfNoneMatch="*")
                outcome = "won"
            except ClientError as error:
                outcome = "refused" if _status(error) in REFUSED else _describe(error)
            except BotoCoreError as error:
                outcome = _describe(error)
            with lock:
                outcomes[writer] = outcome

        threads = [threading.Thread(target=write, args=(i,)) for i in range(self.writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        won = [w for w, outcome in outcomes.items() if outcome == "won"]
        refused = [w for w, outcome in outcomes.items() if outcome == "refused"]
        errors = [outcome for outcome in outcomes.values() if outcome not in ("won", "refused")]
        url, n = self.target.url(key), self.writers
        if errors:
            return [f"{self.at} failed {len(errors)} of {n} writers racing to create {url}: {errors[0]}"]
        if len(won) == n:
            return [
                f"{self.at} ignores If-None-Match: every one of {n} writers overwrote {url}; "
                "a write-once commit cannot be trusted on it"
            ]
        if len(won) != 1:
            return [
                f"{self.at} let {len(won)} of {n} writers racing to create {url} win (exactly 1 must, "
                f"{len(refused)} were refused); a write-once commit cannot be trusted on it"
            ]
        stored = self.read(key)
        if stored != f"writer {won[0]}".encode():
            return [f"{self.at} holds {stored[:40]!r} at {url}, not the body of writer {won[0]}, the one it let win"]
        return []

    def stale_if_match(self) -> list[str]:
        key = f"{self.prefix}compare-and-swap.txt"
        stale = self.call("write", key, "put_object", Body=b"version 1")["ETag"]
        current = self.call("write", key, "put_object", Body=b"version 2")["ETag"]
        url = self.target.url(key)
        try:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=b"version 3", IfMatch=stale)
            return [
                f"{self.at} ignores If-Match: a write with the stale ETag {stale} overwrote {url}; "
                "a compare-and-swap cannot be trusted on it"
            ]
        except ClientError as error:
            if _status(error) not in REFUSED:
                return [f"{self.at} cannot do a conditional write (If-Match) of {url}: {_describe(error)}"]
        except BotoCoreError as error:
            raise _Failed(f"{self.at} failed to write {url}: {_describe(error)}") from None
        if self.read(key) != b"version 2":
            return [f"{self.at} refused a write with the stale ETag {stale} but changed {url}"]
        try:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=b"version 3", IfMatch=current)
        except (BotoCoreError, ClientError) as error:
            return [
                f"{self.at} refuses a write of {url} with its current ETag {current} (If-Match): {_describe(error)}"
            ]
        return []

    def clean_up(self) -> None:
        try:
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix):
                for item in page.get("Contents", []):
                    self.s3.delete_object(Bucket=self.bucket, Key=item["Key"])
        except (BotoCoreError, ClientError):
            pass  # scratch objects under nw-s3-check/ only; a failure here is no verdict on the server


def check(target: Target, writers: int = WRITERS) -> list[str]:
    """Every way the server at `target` fails the project's needs, one sentence each; [] if none."""
    checker = _Checker(target, writers)
    unreachable = checker.reachable()
    if unreachable:
        return [unreachable]
    failures: list[str] = []
    try:
        for step in (
            checker.round_trip,
            checker.if_none_match_on_existing,
            checker.racing_creates,
            checker.stale_if_match,
        ):
            try:
                failures.extend(step())
            except _Failed as failed:
                failures.append(str(failed))
    finally:
        checker.clean_up()
    return failures


def write_marker(target: Target) -> tuple[str, bytes]:
    """An object to read back after a restart: (key, body)."""
    key, body = f"{SCRATCH}restart-{uuid.uuid4().hex}.bin", os.urandom(1024)
    target.client().put_object(Bucket=target.bucket, Key=key, Body=body)
    return key, body


def read_marker(target: Target, key: str, body: bytes, restart: str = "a restart") -> list[str]:
    """[] if the object written before `restart` reads back byte-equal (it is then deleted)."""
    s3 = target.client()
    at = f"the S3 server at {target.server}"
    try:
        stored = s3.get_object(Bucket=target.bucket, Key=key)["Body"].read()
    except (BotoCoreError, ClientError) as error:
        return [
            f"{at} lost {target.url(key)} across {restart}: {_describe(error)}; it cannot keep the lake or archives"
        ]
    if stored != body:
        return [f"{at} returns other bytes for {target.url(key)} after {restart} than were written before it"]
    s3.delete_object(Bucket=target.bucket, Key=key)
    return []
