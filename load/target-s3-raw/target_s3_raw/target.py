"""target-s3-raw: each stream's records as one JSON-lines object in S3, uploaded whole, then verified.

Lines: `simplejson.dumps(record, ensure_ascii=False, separators=(",", ":"), use_decimal=True)`,
i.e. compact JSON, UTF-8, keys in the order received, nothing added or removed (no `_sdc_*`
metadata added, and `_sdc_*` keys that arrive are kept), numbers with the digits they
arrived with (the SDK reads them as Decimal; simplejson writes a Decimal's text).

The lines go to a local temporary file. Only after the input ended cleanly is each object
uploaded with ONE put_object, then read back (head_object size, get_object sha256) and
compared with the local file; a difference raises. If reading the input fails (bad message,
record not matching its schema, SIGTERM, ...) nothing is uploaded. The STATE the SDK would
emit at the end is held back until every object is verified.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import simplejson
from singer_sdk import typing as th
from singer_sdk.sinks import RecordSink
from singer_sdk.target_base import Target

from target_s3_raw.s3 import S3Settings, UploadError, upload_and_verify

STREAM_PLACEHOLDER = "{stream}"
SEPARATORS = (",", ":")


def dump_line(record: dict[str, Any]) -> bytes:
    """One record as one compact JSON line (UTF-8, newline-terminated)."""
    text = simplejson.dumps(record, ensure_ascii=False, separators=SEPARATORS, use_decimal=True, allow_nan=False)
    return text.encode("utf-8") + b"\n"


@dataclass
class Buffer:
    """The local file holding one object's lines until the upload."""

    key: str
    path: Path
    handle: IO[bytes]
    lines: int = 0
    streams: list[str] = field(default_factory=list)

    def write(self, line: bytes) -> None:
        self.handle.write(line)
        self.lines += 1


class RawJsonlSink(RecordSink):
    """Appends each record as a line to its object's buffer (shared by the stream's sinks)."""

    def __init__(self, target: TargetS3Raw, stream_name: str, schema: dict, key_properties: list[str] | None) -> None:
        super().__init__(target, stream_name, schema, key_properties)
        self.buffer = target.buffer_for(stream_name)

    @property
    def include_sdc_metadata_properties(self) -> bool:
        """Never add `_sdc_*` metadata, whatever `add_record_metadata` says: the object is raw."""
        return False

    def _remove_sdc_metadata_from_record(self, record: dict) -> None:
        """Keep `_sdc_*` keys that arrive: the object holds records as received."""

    def _parse_timestamps_in_record(self, record: dict, schema: dict, treatment: Any) -> None:
        """Keep date-time strings as text (the SDK would turn them into datetime objects)."""

    def process_record(self, record: dict, context: dict) -> None:
        self.buffer.write(dump_line(record))


class TargetS3Raw(Target):
    """Writes each stream to s3://{bucket}/{key} ({stream} in the key replaced by the stream name)."""

    name = "target-s3-raw"
    default_sink_class = RawJsonlSink

    config_jsonschema = th.PropertiesList(
        th.Property("bucket", th.StringType, required=True, description="S3 bucket"),
        th.Property(
            "key",
            th.StringType,
            required=True,
            description="Object key to write, e.g. backup/2024-01-15/run-abc.jsonl; "
            "must contain {stream} if more than one stream arrives",
        ),
        th.Property("endpoint_url", th.StringType, description="S3 endpoint URL; unset means AWS"),
        th.Property("region", th.StringType, default="us-east-1", description="S3 region"),
        th.Property("aws_access_key_id", th.StringType, secret=True, description="Access key id"),
        th.Property("aws_secret_access_key", th.StringType, secret=True, description="Secret access key"),
        th.Property("create_bucket", th.BooleanType, default=False, description="Create the bucket if missing"),
    ).to_dict()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.buffers: dict[str, Buffer] = {}
        self._workdir = tempfile.TemporaryDirectory(prefix="target-s3-raw-")
        self._held_state: dict | None = None
        self.uploaded: dict[str, str] = {}  # key -> sha256, once verified
        super().__init__(*args, **kwargs)

    @property
    def s3_settings(self) -> S3Settings:
        return S3Settings(
            bucket=self.config["bucket"],
            endpoint_url=self.config.get("endpoint_url") or None,
            region=self.config.get("region") or "us-east-1",
            aws_access_key_id=self.config.get("aws_access_key_id") or None,
            aws_secret_access_key=self.config.get("aws_secret_access_key") or None,
            create_bucket=bool(self.config.get("create_bucket", False)),
        )

    def key_for(self, stream_name: str) -> str:
        return str(self.config["key"]).replace(STREAM_PLACEHOLDER, stream_name)

    def _new_buffer(self, key: str) -> Buffer:
        path = Path(self._workdir.name) / f"{len(self.buffers):05d}.jsonl"
        buffer = Buffer(key=key, path=path, handle=path.open("wb"))
        self.buffers[key] = buffer
        return buffer

    def buffer_for(self, stream_name: str) -> Buffer:
        key = self.key_for(stream_name)
        buffer = self.buffers.get(key) or self._new_buffer(key)
        if stream_name not in buffer.streams:
            buffer.streams.append(stream_name)
        if len(buffer.streams) > 1:
            raise ValueError(
                f"streams {buffer.streams[0]!r} and {stream_name!r} would both write s3://{self.config['bucket']}/"
                f"{key}: put {STREAM_PLACEHOLDER} in the key setting ({self.config['key']!r}) to write one object each"
            )
        return buffer

    def _write_state_message(self, state: dict) -> None:
        self._held_state = state  # emitted once the objects are verified

    def process_endofpipe(self) -> None:
        super().process_endofpipe()  # drains and cleans up the sinks
        if not self.buffers and STREAM_PLACEHOLDER not in str(self.config["key"]):
            self._new_buffer(str(self.config["key"]))  # no stream at all: the run's object is still written, empty
        settings = self.s3_settings
        for buffer in self.buffers.values():
            buffer.handle.close()
            digest = upload_and_verify(settings, buffer.key, buffer.path)
            self.uploaded[buffer.key] = digest
            self.logger.info(
                "Wrote s3://%s/%s: %d lines, %d bytes, sha256 %s",
                settings.bucket,
                buffer.key,
                buffer.lines,
                buffer.path.stat().st_size,
                digest,
            )
        if self._held_state is not None:
            super()._write_state_message(self._held_state)

    def listen(self, file_input: IO[str] | None = None) -> None:
        try:
            super().listen(file_input)
        finally:
            for buffer in self.buffers.values():
                if not buffer.handle.closed:
                    buffer.handle.close()
            self._workdir.cleanup()


__all__ = ["SEPARATORS", "TargetS3Raw", "UploadError", "dump_line"]
