"""The ads pipeline's settings (`ADS_*` in .env), its run ids, S3 keys and archive cutoff.

Every S3 setting comes from the environment; with no endpoint set, boto3 talks to AWS.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import secrets
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from northwind_elt.core import settings
from northwind_elt.core.errors import ConfigError

PG = "ADS_PG"
RUN_ID_ENV = "ADS_RUN_ID"
RETENTION_ENV = "ADS_RETENTION_HOURS"
DEFAULT_RETENTION_HOURS = 168
# The API's contract: every call returns exactly this many records.
RECORDS_PER_RESPONSE = 100
_RUN_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
MAX_RUN_ID = 128


@dataclass(frozen=True)
class AdsSettings:
    api_url: str
    api_fixture: Path | None
    s3_endpoint_url: str | None  # None: AWS
    s3_region: str
    bucket: str
    access_key_id: str | None
    secret_access_key: str | None
    retention: dt.timedelta
    s3_data_dir: Path  # where the embedded S3 server keeps its objects

    @property
    def endpoint(self) -> str:
        """'http://127.0.0.1:4568', or 'AWS S3 (us-east-1)'."""
        return self.s3_endpoint_url or f"AWS S3 ({self.s3_region})"

    def where(self, key: str = "") -> str:
        """'s3://ad-data/backup/... at http://127.0.0.1:4568' (or 'at AWS S3 (us-east-1)')."""
        return f"s3://{self.bucket}/{key} at {self.endpoint}"


def _env_file() -> Path:
    return settings.project_root() / ".env"


def _url(name: str, value: str) -> str:
    parsed = urllib.parse.urlsplit(value)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError(
            f"{name}={value!r} is not an http(s) URL", f"set {name} in {_env_file()} to e.g. http://127.0.0.1:8765"
        )
    try:
        parsed.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise ConfigError(f"{name}={value!r} has a port that is not a number", f"fix {name} in {_env_file()}") from None
    return value.rstrip("/")


def load() -> AdsSettings:
    env = os.environ
    retention_text = env.get(RETENTION_ENV) or str(DEFAULT_RETENTION_HOURS)
    if not retention_text.isdigit() or int(retention_text) < 1:
        raise ConfigError(
            f"{RETENTION_ENV}={retention_text!r} is not a whole number of hours of at least 1",
            f"set {RETENTION_ENV} in {_env_file()} (default {DEFAULT_RETENTION_HOURS})",
        )
    bucket = env.get("ADS_S3_BUCKET") or "ad-data"
    if not _BUCKET.fullmatch(bucket):
        raise ConfigError(f"ADS_S3_BUCKET={bucket!r} is not a valid S3 bucket name", f"fix it in {_env_file()}")
    endpoint = env.get("ADS_S3_ENDPOINT_URL") or None
    fixture = env.get("ADS_API_FIXTURE") or None
    data_dir = env.get("ADS_S3_DATA_DIR") or None
    return AdsSettings(
        api_url=_url("ADS_API_URL", env.get("ADS_API_URL") or "http://127.0.0.1:8765"),
        api_fixture=Path(fixture).resolve() if fixture else None,
        s3_endpoint_url=_url("ADS_S3_ENDPOINT_URL", endpoint) if endpoint else None,
        s3_region=env.get("ADS_S3_REGION") or "us-east-1",
        bucket=bucket,
        access_key_id=env.get("ADS_S3_ACCESS_KEY_ID") or None,
        secret_access_key=env.get("ADS_S3_SECRET_ACCESS_KEY") or None,
        retention=dt.timedelta(hours=int(retention_text)),
        s3_data_dir=Path(data_dir).resolve() if data_dir else settings.data_dir() / "s3",
    )


def local_port(url: str | None) -> int | None:
    """The port of a URL on this machine (127.0.0.1 / localhost), which the project serves itself."""
    if not url:
        return None
    parsed = urllib.parse.urlsplit(url)
    if parsed.hostname not in ("127.0.0.1", "localhost"):
        return None
    return parsed.port or (443 if parsed.scheme == "https" else 80)


def new_run_id(now: dt.datetime | None = None) -> str:
    """A UTC timestamp to the microsecond plus random hex: unique without coordination."""
    now = now or dt.datetime.now(dt.UTC)
    return f"{now:%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(4)}"


def run_id_from(text: str) -> str:
    """A given run id (e.g. Airflow's `scheduled__2024-01-15T12:12:00+00:00`) as a safe S3 key part.

    Characters other than letters, digits, `.`, `_` and `-` become `-`, so the same run id
    always maps to the same key (a retried Airflow task finds its own backup).
    """
    safe = _RUN_ID_UNSAFE.sub("-", text.strip())
    if not safe or safe.startswith(".") or len(safe) > MAX_RUN_ID:
        raise ConfigError(
            f"run id {text!r} cannot name an S3 object (empty, starts with '.', or longer than {MAX_RUN_ID})",
            "pass --run-id with letters, digits, '.', '_', '-' (or leave it out for a new one)",
        )
    return safe


@dataclass(frozen=True)
class BackupKeys:
    day: dt.date
    run_id: str

    @property
    def prefix(self) -> str:
        return f"backup/{self.day.isoformat()}/"

    @property
    def object(self) -> str:
        return f"{self.prefix}{self.run_id}.jsonl"

    @property
    def incoming(self) -> str:
        """Where target-s3-raw writes the response; moved under backup/ once verified."""
        return f"incoming/{self.day.isoformat()}/{self.run_id}.jsonl"

    @property
    def manifest(self) -> str:
        return f"{self.prefix}{self.run_id}.manifest.json"


def cutoff_for(day: dt.date, retention: dt.timedelta) -> dt.datetime:
    """Rows shown before this instant are old: the start of the logical day (00:00 UTC) minus retention.

    From the day alone, never the clock: a retry or a rerun of the day gets the same cutoff,
    and a run for today never archives a row younger than the retention.
    """
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC) - retention


def archive_key(cutoff: dt.datetime, run_id: str, attempt: int = 1) -> str:
    suffix = "" if attempt == 1 else f"-{attempt}"
    return f"archive/{cutoff:%Y-%m-%d}/api_ad_data_{cutoff:%Y%m%dT%H%M%S}Z_{run_id}{suffix}.jsonl"


def manifest_of(key: str) -> str:
    return key.removesuffix(".jsonl") + ".manifest.json"


def manifest_of_key(manifest: str) -> str:
    """The object a manifest key belongs to (inverse of manifest_of)."""
    return manifest.removesuffix(".manifest.json") + ".jsonl"


class AcceptLostObjects(argparse.Action):
    """`nw ads up --accept-lost-objects`: the flag reaches commands.setup() through this module, as
    `nw ads up` calls setup() without arguments (entry/local_services.py)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs=0, default=False, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        global _accept_lost_objects
        _accept_lost_objects = True
        setattr(namespace, self.dest, True)


_accept_lost_objects = False


def lost_objects_accepted() -> bool:
    return _accept_lost_objects
