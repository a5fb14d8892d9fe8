"""tap-s3-raw: each configured S3 object becomes one stream of {key, line, payload} records.

Before the first message, every object is downloaded to a local temporary file and checked:
its sha256 and line count against the config or against a manifest object (when given), and
every line must be a JSON object. Any problem raises `ObjectError` naming the key (and the line), and nothing is
emitted. Payloads are emitted unchanged (no type conformance; numbers keep their text).
"""

from __future__ import annotations

import decimal
import hashlib
import json
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from singer_sdk import Stream, Tap
from singer_sdk import typing as th
from singer_sdk.helpers.conform import TypeConformanceLevel

CHUNK = 1 << 20
RECORD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "key": {"type": "string"},
        "line": {"type": "integer"},
        "payload": {"type": "object", "additionalProperties": True},
    },
    "required": ["key", "line", "payload"],
}


class ObjectError(RuntimeError):
    """An object is missing, unreadable, or not what the config says."""


@dataclass(frozen=True)
class ObjectSpec:
    stream: str
    key: str
    sha256: str | None = None
    rows: int | None = None
    manifest_key: str | None = None


def parse_line(raw: bytes, key: str, number: int) -> dict[str, Any]:
    """One line as a JSON object, or ObjectError naming key and line (1-based)."""
    try:
        value = json.loads(raw.decode("utf-8"), parse_float=decimal.Decimal)
    except UnicodeDecodeError as error:
        raise ObjectError(f"{key} line {number}: not UTF-8 ({error})") from None
    except ValueError as error:
        raise ObjectError(f"{key} line {number}: not JSON ({error})") from None
    if not isinstance(value, dict):
        raise ObjectError(f"{key} line {number}: not a JSON object (got {type(value).__name__})")
    return value


def iter_lines(path: Path) -> Iterator[bytes]:
    """The file's lines without their newline; a final newline does not start an empty line."""
    with path.open("rb") as handle:
        for raw in handle:
            yield raw[:-1] if raw.endswith(b"\n") else raw


class S3ObjectStream(Stream):
    """The lines of one downloaded, verified object."""

    primary_keys = ("key", "line")
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE  # payloads exactly as stored

    def __init__(self, tap: TapS3Raw, spec: ObjectSpec) -> None:
        self.spec = spec
        super().__init__(tap, schema=RECORD_SCHEMA, name=spec.stream)

    def get_records(self, context: dict | None) -> Iterable[dict[str, Any]]:
        path = self._tap.local_files[self.spec.key]  # type: ignore[attr-defined]
        for number, raw in enumerate(iter_lines(path), start=1):
            yield {"key": self.spec.key, "line": number, "payload": parse_line(raw, self.spec.key, number)}


class TapS3Raw(Tap):
    """Singer tap for JSON-lines objects in S3."""

    name = "tap-s3-raw"
    config_jsonschema = th.PropertiesList(
        th.Property("bucket", th.StringType, required=True, description="S3 bucket"),
        th.Property(
            "objects",
            th.ArrayType(
                th.ObjectType(
                    th.Property("stream", th.StringType, required=True),
                    th.Property("key", th.StringType, required=True),
                    th.Property("sha256", th.StringType),
                    th.Property("rows", th.IntegerType),
                    th.Property("manifest_key", th.StringType),
                )
            ),
            required=True,
            description="Objects to read: [{stream, key, sha256?, rows?, manifest_key?}], one stream each; "
            "manifest_key names a JSON object whose sha256 and rows the object must match",
        ),
        th.Property("endpoint_url", th.StringType, description="S3 endpoint URL; unset means AWS"),
        th.Property("region", th.StringType, default="us-east-1", description="S3 region"),
        th.Property("aws_access_key_id", th.StringType, secret=True, description="Access key id"),
        th.Property("aws_secret_access_key", th.StringType, secret=True, description="Secret access key"),
    ).to_dict()

    @cached_property
    def specs(self) -> list[ObjectSpec]:
        specs = []
        for entry in self.config.get("objects") or []:
            sha256 = entry.get("sha256")
            specs.append(
                ObjectSpec(
                    stream=entry["stream"],
                    key=entry["key"],
                    sha256=sha256.lower() if sha256 else None,
                    rows=entry.get("rows"),
                    manifest_key=entry.get("manifest_key") or None,
                )
            )
        names = [spec.stream for spec in specs]
        duplicated = sorted({name for name in names if names.count(name) > 1})
        if duplicated:
            raise ObjectError(f"stream name(s) given twice in objects: {', '.join(duplicated)}")
        return specs

    @property
    def where(self) -> str:
        return self.config.get("endpoint_url") or f"AWS S3 ({self.config.get('region') or 'us-east-1'})"

    def s3_client(self):
        return boto3.client(
            "s3",
            endpoint_url=self.config.get("endpoint_url") or None,
            region_name=self.config.get("region") or "us-east-1",
            aws_access_key_id=self.config.get("aws_access_key_id") or None,
            aws_secret_access_key=self.config.get("aws_secret_access_key") or None,
            config=Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=10, read_timeout=120),
        )

    @cached_property
    def _workdir(self) -> tempfile.TemporaryDirectory:
        return tempfile.TemporaryDirectory(prefix="tap-s3-raw-")

    @cached_property
    def local_files(self) -> dict[str, Path]:
        """Every object downloaded and checked (raises on the first problem); key -> local file."""
        bucket = self.config["bucket"]
        client = self.s3_client()
        files: dict[str, Path] = {}
        for index, spec in enumerate(self.specs):
            if spec.key in files:
                continue
            if spec.manifest_key is not None:
                spec = self._with_manifest(client, spec)
            path = Path(self._workdir.name) / f"{index:05d}.jsonl"
            digest = hashlib.sha256()
            try:
                body = client.get_object(Bucket=bucket, Key=spec.key)["Body"]
                with path.open("wb") as handle:
                    for chunk in body.iter_chunks(CHUNK):
                        digest.update(chunk)
                        handle.write(chunk)
            except (BotoCoreError, ClientError) as error:
                raise ObjectError(f"cannot read s3://{bucket}/{spec.key} at {self.where}: {error}") from error
            if spec.sha256 is not None and digest.hexdigest() != spec.sha256:
                raise ObjectError(
                    f"checksum mismatch: s3://{bucket}/{spec.key} has sha256 {digest.hexdigest()}, "
                    f"the config says {spec.sha256}"
                )
            rows = 0
            for rows, raw in enumerate(iter_lines(path), start=1):
                parse_line(raw, spec.key, rows)
            if spec.rows is not None and rows != spec.rows:
                raise ObjectError(
                    f"row count mismatch: s3://{bucket}/{spec.key} has {rows} lines, the config says {spec.rows}"
                )
            files[spec.key] = path
        return files

    def _with_manifest(self, client, spec: ObjectSpec) -> ObjectSpec:
        """The spec with the sha256 and rows its manifest object promises (both must agree with the config)."""
        bucket = self.config["bucket"]
        where = f"s3://{bucket}/{spec.manifest_key}"
        try:
            raw = client.get_object(Bucket=bucket, Key=spec.manifest_key)["Body"].read()
        except (BotoCoreError, ClientError) as error:
            raise ObjectError(
                f"cannot read the manifest {where} of s3://{bucket}/{spec.key} at {self.where} "
                f"(an object without its manifest is not verified): {error}"
            ) from error
        try:
            manifest = json.loads(raw)
            sha256, rows = str(manifest["sha256"]).lower(), manifest["rows"]
        except (ValueError, KeyError, TypeError) as error:
            raise ObjectError(f"the manifest {where} is not a JSON object with sha256 and rows ({error!r})") from None
        if not isinstance(rows, int) or isinstance(rows, bool):
            raise ObjectError(f"the manifest {where} has rows {rows!r}, not a whole number")
        for name, given, promised in (("sha256", spec.sha256, sha256), ("rows", spec.rows, rows)):
            if given is not None and given != promised:
                raise ObjectError(
                    f"the config says {name} {given} for s3://{bucket}/{spec.key}, its manifest {promised}"
                )
        return ObjectSpec(stream=spec.stream, key=spec.key, sha256=sha256, rows=rows, manifest_key=spec.manifest_key)

    def discover_streams(self) -> list[S3ObjectStream]:
        return [S3ObjectStream(self, spec) for spec in self.specs]

    def load_streams(self) -> list[S3ObjectStream]:
        """The streams in the config's order (the SDK would sort them by name)."""
        return self.discover_streams()

    def sync_all(self) -> None:
        try:
            self.local_files  # noqa: B018 - download and check everything before the first message
            super().sync_all()
        finally:
            self._workdir.cleanup()
            self.__dict__.pop("local_files", None)
            self.__dict__.pop("_workdir", None)


__all__ = ["RECORD_SCHEMA", "ObjectError", "ObjectSpec", "S3ObjectStream", "TapS3Raw", "parse_line"]
