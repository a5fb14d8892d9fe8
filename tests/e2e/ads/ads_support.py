"""What the ads end-to-end modules share: the fixture response, the mapping the spec makes of
it (expected values, computed here), and `Ads`, the project's commands against one API, S3
server and the session's Postgres. Imported as e2e.ads.ads_support (tests/ is on the path)."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3
from support import PROJECT, Pipeline, free_port

from northwind_elt.local import s3server

FIXTURE = PROJECT.parent / "shared" / "data" / "ads-api" / "sample_response.json"
if not FIXTURE.exists():  # the plugin keeps a copy of the shared fixture
    FIXTURE = PROJECT / "extract" / "tap-ads-api" / "tests" / "fixtures" / "sample_response.json"
RECORDS = json.loads(FIXTURE.read_text(), parse_float=decimal.Decimal)
BUCKET = "ad-data"
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def shown_at(record: dict) -> dt.datetime:
    """The epoch seconds as a UTC instant, exactly (Decimal), to the microsecond."""
    micros = (record["shown_at"] * 1_000_000).to_integral_value(rounding=decimal.ROUND_HALF_UP)
    return EPOCH + dt.timedelta(microseconds=int(micros))


def mapped(record: dict) -> tuple:
    """The api_ad_data row the spec's mapping makes of one API record."""
    campaign = record["ad_campaign"]
    return (
        record["ad_id"],
        record["ad_group"],
        None if campaign == "__unknown" else campaign,
        record.get("ad_scheme"),
        shown_at(record),
    )


class Ads:
    def __init__(self, pipeline: Pipeline, root: Path) -> None:
        self.api_port, self.s3_port = free_port(), free_port()
        self.env = {
            **pipeline.env,
            "ADS_API_URL": f"http://127.0.0.1:{self.api_port}",
            "ADS_API_FIXTURE": str(FIXTURE),
            "ADS_S3_ENDPOINT_URL": f"http://127.0.0.1:{self.s3_port}",
            "ADS_S3_REGION": "us-east-1",
            "ADS_S3_BUCKET": BUCKET,
            "ADS_S3_ACCESS_KEY_ID": s3server.DEFAULT_ACCESS_KEY,
            "ADS_S3_SECRET_ACCESS_KEY": s3server.DEFAULT_SECRET_KEY,
            "ADS_S3_DATA_DIR": str(root / "s3"),
            "ADS_RETENTION_HOURS": "168",
        }
        self.pipeline = pipeline

    def nw(self, *args: str, **env: str) -> subprocess.CompletedProcess:
        return self.pipeline.nw(*args, extra_env={**self.env, **env}, timeout=600)

    def ok(self, *args: str, **env: str) -> str:
        result = self.nw(*args, **env)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return result.stdout

    def failed(self, *args: str, **env: str) -> str:
        result = self.nw(*args, **env)
        assert result.returncode != 0, result.stdout[-3000:]
        return result.stdout + result.stderr

    @property
    def s3(self):
        return boto3.client(
            "s3",
            endpoint_url=self.env["ADS_S3_ENDPOINT_URL"],
            region_name="us-east-1",
            aws_access_key_id=s3server.DEFAULT_ACCESS_KEY,
            aws_secret_access_key=s3server.DEFAULT_SECRET_KEY,
        )

    def keys(self, prefix: str) -> list[str]:
        listed = self.s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
        return sorted(item["Key"] for item in listed.get("Contents", []))

    def get(self, key: str) -> bytes:
        return self.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()

    def api_calls(self, base_url: str | None = None) -> int:
        """GET /ads calls the API (ours by default) has answered so far."""
        with urllib.request.urlopen(f"{base_url or self.env['ADS_API_URL']}/stats", timeout=10) as answer:
            return json.load(answer)["ads_requests"]

    def rows(self) -> dict[str, tuple]:
        with self.pipeline.connect("ADS_PG") as conn:
            found = conn.execute(
                "SELECT ad_id, ad_group, ad_campaign, ad_scheme, shown_at FROM api_ad_data ORDER BY ad_id"
            ).fetchall()
        return {row[0]: tuple(row) for row in found}


@contextmanager
def ads_up(pipeline: Pipeline, root: Path) -> Iterator[Ads]:
    """The ads pipeline's local API and S3 server up in `root` for a test module, stopped after."""
    ads = Ads(pipeline, root)
    # Each module's bucket starts empty, so must the records of the session's ads database: `nw ads up`
    # refuses a new bucket where the database records objects (another module's).
    with pipeline.connect("ADS_PG") as conn:
        conn.execute("DROP SCHEMA IF EXISTS ads_meta CASCADE")
        conn.execute("DROP TABLE IF EXISTS public.api_ad_data")
    try:
        print(ads.ok("ads", "up"))
        yield ads
    finally:
        ads.nw("ads", "down")


def backup_objects(ads: Ads, day: str) -> list[str]:
    return [k for k in ads.keys(f"backup/{day}/") if k.endswith(".jsonl")]


def decimal_records(records: list[dict]) -> list[dict]:
    return json.loads(json.dumps(records), parse_float=decimal.Decimal)
