"""tap-ads-api: one stream `ads` from one GET of the ads API, validated, emitted unchanged.

The API returns a JSON array of ad records and new random data on every call, so a sync
makes exactly one request (no pagination, no state). The whole response is checked before
the first record is written: it must be JSON (no NaN or Infinity), a JSON array, and every
element must match `ADS_SCHEMA`; otherwise the sync fails and nothing is emitted. Records are
emitted as received: no type conformance (`"__unknown"` stays a string, numbers keep their
text via Decimal), no keys added (an absent `ad_scheme` stays absent) and none removed.

A refused response is not lost: with `refused_path` set, its body is written there byte for
byte (and `<refused_path>.reason.json` says why) before the sync fails. With `response_file`
set, the body is read from that file instead of the API (a replay), with the same checks.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import backoff
import jsonschema
import requests
from singer_sdk import RESTStream, Tap
from singer_sdk import typing as th
from singer_sdk.exceptions import FatalAPIError, RetriableAPIError
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.helpers.jsonpath import extract_jsonpath

MAX_TRIES = 3  # the first request and at most 2 retries, on 5xx/429/connection errors only
BACKOFF_FACTOR_S = 0.25  # waits 0.25 s, then 0.5 s

# The API's record contract (shared/data/ads-api/record.schema.json), checked on every record.
UUID_PATTERN = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
ADS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["ad_id", "ad_group", "ad_campaign", "shown_at"],
    "properties": {
        "ad_id": {"type": "string", "pattern": UUID_PATTERN},
        "ad_group": {"type": "string", "enum": ["marketing", "recruiting", "brand", "investment"]},
        "ad_campaign": {
            "oneOf": [
                {"type": "integer", "minimum": 500, "maximum": 999},
                {"type": "string", "const": "__unknown"},
            ]
        },
        "shown_at": {"type": "number"},
        "ad_scheme": {
            "type": "object",
            "additionalProperties": False,
            "required": ["origin", "approved"],
            "properties": {
                "origin": {"type": "string", "enum": ["manual", "automatic"]},
                "approved": {"type": "boolean"},
            },
        },
    },
}


REASON_SUFFIX = ".reason.json"  # beside a kept refused body: why it was refused


class AdsApiError(FatalAPIError):
    """The API's answer cannot be used: HTTP error, not JSON, not an array, or a bad record."""


def _write_whole(path: Path, content: bytes) -> None:
    """Under a temporary name, then renamed: a reader never sees half a file."""
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(content)
    os.replace(partial, path)


def _not_json(constant: str) -> None:
    """NaN, Infinity and -Infinity: Python's json reads them, JSON has no such numbers."""
    raise ValueError(f"{constant} is not a JSON number")


class AdsStream(RESTStream):
    """GET {api_url}{path} -> a JSON array of ad records."""

    name = "ads"
    primary_keys = ("ad_id",)
    replication_key = None
    records_jsonpath = "$[*]"
    schema = ADS_SCHEMA
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE  # emit records exactly as received

    @property
    def url_base(self) -> str:
        return str(self.config["api_url"]).rstrip("/")

    @property
    def path(self) -> str:  # type: ignore[override]
        path = str(self.config.get("path") or "/ads")
        return path if path.startswith("/") else f"/{path}"

    @property
    def timeout(self) -> int:
        return int(self.config.get("timeout_s") or 30)

    def get_url(self, context: dict | None) -> str:
        return self.url_base + self.path

    def get_new_paginator(self) -> None:
        return None

    def backoff_max_tries(self) -> int:
        return MAX_TRIES

    def backoff_wait_generator(self):  # type: ignore[override]
        return backoff.expo(base=2, factor=BACKOFF_FACTOR_S)

    def backoff_jitter(self, value: float) -> float:
        return value

    def response_error_message(self, response: requests.Response) -> str:
        return f"HTTP {response.status_code} {response.reason} from GET {response.url}"

    def parse_response(self, response: requests.Response) -> Iterable[dict]:
        """The response's records, once all of them are known to be valid."""
        return self.parse_body(response.content, f"GET {response.url}")

    def parse_body(self, content: bytes, source: str) -> list[dict]:
        """The records of a body from `source` ("GET <url>" or "the file <path>"); a refused
        body is kept at `refused_path` (when set) before the error is raised."""
        try:
            return self._checked(content, source)
        except AdsApiError as error:
            self._keep_refused(content, source, str(error))
            raise

    def _checked(self, content: bytes, source: str) -> list[dict]:
        try:
            body = json.loads(content, parse_float=decimal.Decimal, parse_constant=_not_json)
        except ValueError as error:
            raise AdsApiError(f"response from {source} is not JSON: {error}") from None
        if not isinstance(body, list):
            raise AdsApiError(f"response from {source} is not a JSON array (got {type(body).__name__})")
        validator = jsonschema.Draft7Validator(ADS_SCHEMA)
        for index, record in enumerate(body):
            errors = sorted(validator.iter_errors(record), key=lambda e: list(e.absolute_path))
            if errors:
                ad_id = record.get("ad_id") if isinstance(record, dict) else None
                first = errors[0]
                where = first.json_path if first.absolute_path else "the record"
                raise AdsApiError(
                    f"record {index} (ad_id {ad_id!r}) from {source} breaks the schema at {where}: {first.message}"
                )
        return list(extract_jsonpath(self.records_jsonpath, body))

    def _keep_refused(self, content: bytes, source: str, reason: str) -> None:
        """The refused body as received at `refused_path`, then its reason beside it (last: the
        reason file says the body is complete)."""
        target = self.config.get("refused_path")
        if not target:
            return
        path = Path(target)
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_whole(path, content)
        why = {
            "reason": reason,
            "source": source,
            "bytes": len(content),
            "sha256": hashlib.sha256(content).hexdigest(),
            "received_at": dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"),
        }
        _write_whole(Path(f"{path}{REASON_SUFFIX}"), (json.dumps(why, indent=2) + "\n").encode())
        self.logger.error("Refused response kept at %s (%d bytes): %s", path, len(content), reason)

    def get_records(self, context: dict | None) -> Iterable[dict[str, Any]]:
        response_file = self.config.get("response_file")
        if response_file:  # a replay: the body a former sync kept, not a new API call
            path = Path(response_file)
            try:
                content = path.read_bytes()
            except OSError as error:
                raise AdsApiError(f"cannot read the response file {path}: {error}") from None
            yield from self.parse_body(content, f"the file {path}")
            return
        try:
            yield from self.request_records(context)
        except AdsApiError:
            raise
        except RetriableAPIError as error:  # still failing after MAX_TRIES
            raise AdsApiError(f"{error} (gave up after {MAX_TRIES} tries)") from None
        except FatalAPIError as error:
            raise AdsApiError(str(error)) from None
        except requests.RequestException as error:
            raise AdsApiError(f"GET {self.get_url(context)} failed after {MAX_TRIES} tries: {error}") from None

    def post_process(self, row: dict, context: dict | None = None) -> dict:
        return row  # unchanged


class TapAdsApi(Tap):
    """Singer tap for the ads API."""

    name = "tap-ads-api"
    config_jsonschema = th.PropertiesList(
        th.Property(
            "api_url",
            th.StringType,
            required=True,
            description="Base URL of the ads API, e.g. http://127.0.0.1:8765",
        ),
        th.Property("path", th.StringType, default="/ads", description="Path of the ads endpoint"),
        th.Property("timeout_s", th.IntegerType, default=30, description="Timeout of the request, in seconds"),
        th.Property(
            "refused_path",
            th.StringType,
            description="Local file where a refused response's body is kept as received "
            "(its reason in <refused_path>.reason.json) before the sync fails",
        ),
        th.Property(
            "response_file",
            th.StringType,
            description="Read the response from this file instead of calling the API (a replay), same checks",
        ),
    ).to_dict()

    def discover_streams(self) -> list[AdsStream]:
        return [AdsStream(self)]


__all__ = ["ADS_SCHEMA", "REASON_SUFFIX", "AdsApiError", "AdsStream", "TapAdsApi"]
