"""tap-s3-raw against moto's S3 server: the SDK's standard tap tests, then the tap's own
promises (round trip of the ads fixture, checksum/row checks, bad lines named)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from moto_s3 import MotoS3
from singer_sdk.testing import SuiteConfig, get_tap_test_class
from tap_s3_raw.tap import ObjectError, TapS3Raw

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "sample_response.json"
RECORDS = json.loads(FIXTURE.read_text())
BUCKET = "ad-data"
BACKUP_KEY = "backup/2024-01-15/run-abc.jsonl"


def jsonl(records: list[dict]) -> bytes:
    """As target-s3-raw writes them: compact, UTF-8, one per line."""
    return b"".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")).encode() + b"\n" for r in records)


BACKUP = jsonl(RECORDS)
SHA = hashlib.sha256(BACKUP).hexdigest()

# The SDK's test class syncs at collection time, so the server and objects exist now.
S3 = MotoS3()
S3.client.create_bucket(Bucket=BUCKET)
S3.client.put_object(Bucket=BUCKET, Key=BACKUP_KEY, Body=BACKUP)
S3.client.put_object(Bucket=BUCKET, Key="backup/empty.jsonl", Body=b"")


def config(objects: list[dict], **extra) -> dict:
    return {
        "bucket": BUCKET,
        "objects": objects,
        "endpoint_url": S3.endpoint_url,
        "region": "us-east-1",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
        **extra,
    }


STANDARD = config(
    [
        {"stream": "ads_backup", "key": BACKUP_KEY, "sha256": SHA, "rows": 100},
        {"stream": "empty", "key": "backup/empty.jsonl", "rows": 0},
    ]
)
TestTapS3Raw = get_tap_test_class(
    TapS3Raw, config=STANDARD, suite_config=SuiteConfig(ignore_no_records_for_streams=["empty"])
)


def messages_of(cfg: dict, capsys: pytest.CaptureFixture[str]) -> list[dict]:
    capsys.readouterr()
    TapS3Raw(config=cfg, parse_env_config=False).sync_all()
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


def refused(cfg: dict, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    with pytest.raises(ObjectError) as error:
        TapS3Raw(config=cfg, parse_env_config=False).sync_all()
    assert capsys.readouterr().out == ""  # nothing at all was emitted
    return str(error.value)


def put(key: str, body: bytes) -> str:
    S3.client.put_object(Bucket=BUCKET, Key=key, Body=body)
    return key


def test_round_trip_of_the_ads_fixture(capsys):
    messages = messages_of(STANDARD, capsys)
    records = [m["record"] for m in messages if m["type"] == "RECORD" and m["stream"] == "ads_backup"]
    assert [r["line"] for r in records] == list(range(1, 101))
    assert {r["key"] for r in records} == {BACKUP_KEY}
    payloads = [r["payload"] for r in records]
    assert payloads == RECORDS
    assert [list(p) for p in payloads] == [list(r) for r in RECORDS]  # keys and their order kept
    assert sum(p["ad_campaign"] == "__unknown" for p in payloads) == 50
    assert sum("ad_scheme" in p for p in payloads) == 24
    schemas = {m["stream"]: m for m in messages if m["type"] == "SCHEMA"}
    assert list(schemas) == ["ads_backup", "empty"]  # the config's order
    assert schemas["ads_backup"]["key_properties"] == ["key", "line"]


def test_numbers_keep_their_text(capsys):
    key = put("raw/numbers.jsonl", b'{"n":1705281073.1234560,"big":12345678901234567890,"u":"\xce\x93"}')
    capsys.readouterr()
    TapS3Raw(config=config([{"stream": "n", "key": key, "rows": 1}]), parse_env_config=False).sync_all()
    (line,) = [line for line in capsys.readouterr().out.splitlines() if '"RECORD"' in line]
    payload = line[line.index('"payload"') :]
    assert "1705281073.1234560" in payload and "12345678901234567890" in payload
    assert json.loads(line)["record"]["payload"]["u"] == "Γ"


def test_checksum_mismatch_is_refused_naming_the_key(capsys):
    wrong = "0" * 64
    message = refused(config([{"stream": "ads", "key": BACKUP_KEY, "sha256": wrong}]), capsys)
    assert message == (f"checksum mismatch: s3://{BUCKET}/{BACKUP_KEY} has sha256 {SHA}, the config says {wrong}")


def test_row_count_mismatch_is_refused_naming_the_key(capsys):
    message = refused(config([{"stream": "ads", "key": BACKUP_KEY, "rows": 99}]), capsys)
    assert message == f"row count mismatch: s3://{BUCKET}/{BACKUP_KEY} has 100 lines, the config says 99"


def test_a_problem_in_the_second_object_stops_everything(capsys):
    key = put("raw/bad.jsonl", jsonl(RECORDS[:3]) + b"[1, 2]\n" + jsonl(RECORDS[3:5]))
    objects = [{"stream": "good", "key": BACKUP_KEY, "sha256": SHA}, {"stream": "bad", "key": key}]
    assert refused(config(objects), capsys) == f"{key} line 4: not a JSON object (got list)"


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (b'{"ad_id": ', "not JSON"),
        (b"", "not JSON"),  # a blank line in the middle
        (b'"just a string"', "not a JSON object (got str)"),
        (b"\xff\xfe{}", "not UTF-8"),
    ],
)
def test_a_bad_line_is_named(capsys, line, why):
    key = put("raw/line.jsonl", jsonl(RECORDS[:2]) + line + b"\n" + jsonl(RECORDS[2:3]))
    assert refused(config([{"stream": "x", "key": key}]), capsys).startswith(f"{key} line 3: {why}")


def test_last_line_without_newline_counts(capsys):
    key = put("raw/no-final-newline.jsonl", jsonl(RECORDS[:2]) + json.dumps(RECORDS[2]).encode())
    messages = messages_of(config([{"stream": "x", "key": key, "rows": 3}]), capsys)
    assert [m["record"]["payload"] for m in messages if m["type"] == "RECORD"] == RECORDS[:3]


def test_a_manifest_supplies_checksum_and_rows(capsys):
    put("backup/2024-01-15/run-abc.manifest.json", json.dumps({"sha256": SHA, "rows": 100}).encode())
    objects = [{"stream": "x", "key": BACKUP_KEY, "manifest_key": "backup/2024-01-15/run-abc.manifest.json"}]
    messages = messages_of(config(objects), capsys)
    assert [m["record"]["payload"] for m in messages if m["type"] == "RECORD"] == RECORDS


@pytest.mark.parametrize(
    ("manifest", "why"),
    [
        ({"sha256": "0" * 64, "rows": 100}, "checksum mismatch: "),
        ({"sha256": SHA, "rows": 101}, "row count mismatch: "),
        ({"rows": 100}, "the manifest s3://ad-data/m/bad.json is not a JSON object with sha256 and rows"),
        ({"sha256": SHA, "rows": "100"}, "the manifest s3://ad-data/m/bad.json has rows '100', not a whole number"),
    ],
)
def test_an_object_that_does_not_match_its_manifest_is_refused(capsys, manifest, why):
    put("m/bad.json", json.dumps(manifest).encode())
    message = refused(config([{"stream": "x", "key": BACKUP_KEY, "manifest_key": "m/bad.json"}]), capsys)
    assert message.startswith(why)


def test_an_object_without_its_manifest_is_refused_as_unverified(capsys):
    objects = [{"stream": "x", "key": BACKUP_KEY, "manifest_key": "backup/2024-01-15/nope.manifest.json"}]
    message = refused(config(objects), capsys)
    assert message.startswith(
        f"cannot read the manifest s3://{BUCKET}/backup/2024-01-15/nope.manifest.json of s3://{BUCKET}/{BACKUP_KEY}"
    )
    assert "not verified" in message


def test_a_missing_object_is_named(capsys):
    message = refused(config([{"stream": "x", "key": "backup/nope.jsonl"}]), capsys)
    assert message.startswith(f"cannot read s3://{BUCKET}/backup/nope.jsonl at {S3.endpoint_url}: ")
    assert "NoSuchKey" in message


def test_unreachable_s3_is_named(capsys):
    closed = MotoS3()
    endpoint = closed.endpoint_url
    closed.stop()
    message = refused(config([{"stream": "x", "key": BACKUP_KEY}], endpoint_url=endpoint), capsys)
    assert message.startswith(f"cannot read s3://{BUCKET}/{BACKUP_KEY} at {endpoint}: Could not connect")


def test_a_stream_name_given_twice_is_refused(capsys):
    objects = [{"stream": "x", "key": BACKUP_KEY}, {"stream": "x", "key": "backup/empty.jsonl"}]
    assert refused(config(objects), capsys) == "stream name(s) given twice in objects: x"


def test_meltano_yml_declares_every_setting():
    import yaml

    project = yaml.safe_load((Path(__file__).resolve().parent.parent / "meltano.yml").read_text())
    (extractor,) = project["plugins"]["extractors"]
    declared = {s["name"] for s in extractor["settings"]}
    assert declared == {"bucket", "objects", "endpoint_url", "region", "aws_access_key_id", "aws_secret_access_key"}
    assert declared <= set(TapS3Raw.config_jsonschema["properties"])
    assert extractor["pip_url"] == "-e ."
