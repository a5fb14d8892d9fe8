"""The S3 conformance check (core/s3check.py, `nw s3 check`): it passes against the embedded
SeaweedFS, started by `nw s3 up` on a free port in a temporary directory (one server for the
module), and fails, naming the ignored header, against a stub S3 that ignores conditions. And
objects survive a restart of the embedded server on the same data directory."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import subprocess
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
from support import NW, PROJECT, free_port

from northwind_elt.core import s3check
from northwind_elt.core.net import answers
from northwind_elt.local import s3server

BUCKET = "conformance"
REGION = "us-east-1"
SCRATCH_KEY = r"nw-s3-check/[0-9a-f]{32}/"


def nw(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([NW, *args], env=env, cwd=PROJECT, capture_output=True, text=True, timeout=300)


def s3_env(root: Path, endpoint: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ADS_", "NW_LAKE_S3_"))},
        "MELTANO_PROJECT_ROOT": str(PROJECT),
        "NW_DATA_DIR": str(root / "nw-data"),
        "ADS_S3_ENDPOINT_URL": endpoint,
        "ADS_S3_REGION": REGION,
        "ADS_S3_BUCKET": BUCKET,
        "ADS_S3_ACCESS_KEY_ID": s3server.DEFAULT_ACCESS_KEY,
        "ADS_S3_SECRET_ACCESS_KEY": s3server.DEFAULT_SECRET_KEY,
        "ADS_S3_DATA_DIR": str(root / "s3"),
    }


def target(endpoint: str) -> s3check.Target:
    return s3check.Target(endpoint, REGION, BUCKET, s3server.DEFAULT_ACCESS_KEY, s3server.DEFAULT_SECRET_KEY)


def client(endpoint: str):
    return s3server.client(endpoint, s3server.Key(s3server.DEFAULT_ACCESS_KEY, s3server.DEFAULT_SECRET_KEY), REGION)


@dataclass
class Server:
    endpoint: str
    env: dict[str, str]


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("s3-conformance")
    server = Server(f"http://127.0.0.1:{free_port()}", {})
    server.env = s3_env(root, server.endpoint)
    up = nw(server.env, "s3", "up")
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        assert f"S3 server (SeaweedFS) started on {server.endpoint}/" in up.stdout
        client(server.endpoint).create_bucket(Bucket=BUCKET)
        yield server
    finally:
        down = nw(server.env, "s3", "down")
        assert "S3 server (SeaweedFS) stopped (process" in down.stdout, down.stdout + down.stderr


# --- a stub S3 that ignores every condition ---------------------------------------------------


class IgnoringS3(BaseHTTPRequestHandler):
    """Whole objects in memory, path-style, no auth: PUT/GET/HEAD/DELETE of a bucket or an
    object and ListObjectsV2. It ignores If-None-Match and If-Match, as s3rver does."""

    protocol_version = "HTTP/1.1"  # answers boto3's `Expect: 100-continue` at once (1.0 makes it wait 1 s)
    buckets: dict[str, dict[str, tuple[bytes, dict[str, str]]]] = {}
    lock = threading.Lock()

    def log_message(self, *args) -> None:
        pass

    def _target(self) -> tuple[str, str, dict[str, list[str]]]:
        url = urllib.parse.urlsplit(self.path)
        bucket, _, key = urllib.parse.unquote(url.path).lstrip("/").partition("/")
        return bucket, key, urllib.parse.parse_qs(url.query)

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _missing(self, code: str) -> None:
        self._send(404, f"<Error><Code>{code}</Code><Message>not found</Message></Error>".encode())

    def _body(self) -> bytes:
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if "aws-chunked" not in self.headers.get("Content-Encoding", ""):
            return raw
        body, rest = b"", raw  # <hex size>[;...]\r\n<data>\r\n ... 0\r\n<trailers>
        while True:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                return body
            body, rest = body + rest[:size], rest[size + 2 :]

    def do_PUT(self) -> None:
        bucket, key, _ = self._target()
        body = self._body()
        with self.lock:
            if not key:
                self.buckets.setdefault(bucket, {})
                return self._send(200)
            if bucket not in self.buckets:
                return self._missing("NoSuchBucket")
            metadata = {k: v for k, v in self.headers.items() if k.lower().startswith("x-amz-meta-")}
            self.buckets[bucket][key] = (body, metadata)
        self._send(200, headers={"ETag": f'"{hashlib.md5(body).hexdigest()}"'})

    def do_GET(self) -> None:
        bucket, key, query = self._target()
        with self.lock:
            exists, objects = bucket in self.buckets, dict(self.buckets.get(bucket, {}))
        if not exists:
            return self._missing("NoSuchBucket")
        if not key:
            prefix = query.get("prefix", [""])[0]
            items = "".join(
                f"<Contents><Key>{escape(k)}</Key><Size>{len(body)}</Size>"
                f'<ETag>"{hashlib.md5(body).hexdigest()}"</ETag></Contents>'
                for k, (body, _) in sorted(objects.items())
                if k.startswith(prefix)
            )
            count = items.count("<Contents>")
            listing = (
                '<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>'
                f"{escape(bucket)}</Name><Prefix>{escape(prefix)}</Prefix><KeyCount>{count}</KeyCount>"
                f"<MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>{items}</ListBucketResult>"
            )
            return self._send(200, listing.encode(), {"Content-Type": "application/xml"})
        if key not in objects:
            return self._missing("NoSuchKey")
        body, metadata = objects[key]
        self._send(
            200,
            body,
            {
                **metadata,
                "ETag": f'"{hashlib.md5(body).hexdigest()}"',
                "Last-Modified": formatdate(usegmt=True),
            },
        )

    do_HEAD = do_GET

    def do_DELETE(self) -> None:
        bucket, key, _ = self._target()
        with self.lock:
            self.buckets.get(bucket, {}).pop(key, None)
        self._send(204)


class StubServer(ThreadingHTTPServer):
    request_queue_size = 64  # 16 writers connect at once; the default backlog of 5 delays some by 1 s


@pytest.fixture(scope="module")
def stub() -> Iterator[str]:
    server = StubServer(("127.0.0.1", 0), IgnoringS3)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    client(endpoint).create_bucket(Bucket=BUCKET)
    try:
        yield endpoint
    finally:
        server.shutdown()
        server.server_close()


def expected_failures(endpoint: str) -> list[str]:
    """The sentences, as patterns, of a server that ignores both conditions."""
    at, scratch = re.escape(f"the S3 server at {endpoint}"), f"s3://{BUCKET}/{SCRATCH_KEY}"
    return [
        f"{at} ignores If-None-Match: a conditional create of the existing {scratch}existing.txt succeeded and "
        "overwrote it; a write-once commit cannot be trusted on it",
        f"{at} ignores If-None-Match: every one of 16 writers overwrote {scratch}race.txt; "
        "a write-once commit cannot be trusted on it",
        f'{at} ignores If-Match: a write with the stale ETag "[0-9a-f]{{32}}" overwrote {scratch}compare-and-swap.txt; '
        "a compare-and-swap cannot be trusted on it",
    ]


# --- the tests -------------------------------------------------------------------------------


def test_the_embedded_server_passes_every_check(embedded: Server) -> None:
    assert s3check.check(target(embedded.endpoint)) == []
    # The check leaves nothing behind.
    assert client(embedded.endpoint).list_objects_v2(Bucket=BUCKET).get("Contents", []) == []


def test_nw_s3_check_passes_on_the_embedded_server(embedded: Server) -> None:
    result = nw(embedded.env, "s3", "check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        f"s3://{BUCKET}/ at {embedded.endpoint}: put/get/head/list/delete, If-None-Match: * refused on an existing "
        "key, 16 racing creates -> 1 winner, stale If-Match refused: ok"
    ) in result.stdout


def test_a_server_that_ignores_the_conditions_fails_with_one_sentence_each(stub: str) -> None:
    failures = s3check.check(target(stub))
    patterns = expected_failures(stub)
    assert len(failures) == len(patterns), failures  # the round trip passes: the stub stores objects
    for failure, pattern in zip(failures, patterns, strict=True):
        assert re.fullmatch(pattern, failure), failure
    assert IgnoringS3.buckets[BUCKET] == {}  # scratch objects removed


def test_nw_s3_check_exits_non_zero_naming_each_failure(stub: str, tmp_path: Path) -> None:
    result = nw(s3_env(tmp_path, stub), "s3", "check")
    assert result.returncode == 1, result.stdout + result.stderr
    errors = [line.removeprefix("ERROR: ") for line in result.stderr.splitlines() if line.startswith("ERROR: ")]
    assert len(errors) == 3, result.stderr
    for error, pattern in zip(errors, expected_failures(stub), strict=True):
        assert re.fullmatch(pattern, error), error
    assert "Then rerun: nw s3 check" in result.stderr
    assert result.stdout.strip() == ""  # nothing claimed ok


def test_an_unreachable_bucket_is_named(embedded: Server) -> None:
    missing = dataclasses.replace(target(embedded.endpoint), bucket="no-such-bucket")
    assert s3check.check(missing) == [f"the bucket s3://no-such-bucket/ does not exist at {embedded.endpoint}"]


def test_objects_survive_a_restart_of_the_embedded_server(embedded: Server) -> None:
    body = os.urandom(100_000)
    client(embedded.endpoint).put_object(Bucket=BUCKET, Key="archive/2024-01-15/x.jsonl", Body=body)
    down = nw(embedded.env, "s3", "down")
    assert "S3 server (SeaweedFS) stopped (process" in down.stdout, down.stdout + down.stderr
    assert not answers(f"{embedded.endpoint}/")  # really down
    up = nw(embedded.env, "s3", "up")
    assert f"S3 server (SeaweedFS) started on {embedded.endpoint}/" in up.stdout, up.stdout + up.stderr
    s3 = client(embedded.endpoint)
    assert s3.get_object(Bucket=BUCKET, Key="archive/2024-01-15/x.jsonl")["Body"].read() == body
    s3.delete_object(Bucket=BUCKET, Key="archive/2024-01-15/x.jsonl")

    # The same through `nw s3 check --restart`: its own object, written before, read back after.
    result = nw(embedded.env, "s3", "check", "--restart")
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(
        rf"s3://{BUCKET}/nw-s3-check/restart-[0-9a-f]{{32}}\.bin read back byte-equal after a restart on the same "
        rf"data directory {re.escape(embedded.env['ADS_S3_DATA_DIR'])}: ok",
        result.stdout,
    ), result.stdout
