"""target-s3-raw against moto's S3 server: the SDK's standard target tests, then the target's
own promises (lines equal to the input records, verified upload, empty object, failures)."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from moto_s3 import MotoS3
from singer_sdk.singerlib.exceptions import InvalidInputLine
from singer_sdk.testing import get_target_test_class
from target_s3_raw import s3 as s3_module
from target_s3_raw.target import TargetS3Raw, UploadError

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "sample_response.json"
RECORDS = json.loads(FIXTURE.read_text())
ADS_SCHEMA = {
    "type": "object",
    "properties": {
        "ad_id": {"type": "string"},
        "ad_group": {"type": "string"},
        "ad_campaign": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
        "shown_at": {"type": "number"},
        "ad_scheme": {
            "type": "object",
            "properties": {"origin": {"type": "string"}, "approved": {"type": "boolean"}},
        },
    },
}
KEY = "backup/2024-01-15/run-abc.jsonl"

# The SDK's standard tests send many streams, so their key names the stream.
S3 = MotoS3()
S3.client.create_bucket(Bucket="standard")
TestTargetS3Raw = get_target_test_class(TargetS3Raw, config=S3.config("standard", "standard/{stream}.jsonl"))


@pytest.fixture
def bucket(request) -> Iterator[str]:
    name = "t-" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:20]
    S3.client.create_bucket(Bucket=name)
    yield name


def singer_lines(stream: str, records: list[dict], schema: dict = ADS_SCHEMA, key: list[str] | None = None) -> str:
    messages = [{"type": "SCHEMA", "stream": stream, "schema": schema, "key_properties": key or []}]
    messages += [{"type": "RECORD", "stream": stream, "record": record} for record in records]
    messages.append({"type": "STATE", "value": {"bookmarks": {stream: {"done": True}}}})
    return "".join(json.dumps(m) + "\n" for m in messages)


def run(config: dict, text: str) -> TargetS3Raw:
    target = TargetS3Raw(config=config, parse_env_config=False)
    target.listen(io.StringIO(text))
    return target


def test_lines_parse_equal_to_the_input_records(bucket, capsys):
    target = run(S3.config(bucket, KEY), singer_lines("ads", RECORDS, key=["ad_id"]))
    body = S3.get(bucket, KEY)
    lines = body.decode("utf-8").split("\n")
    assert lines[-1] == ""  # every line ends with a newline
    parsed = [json.loads(line) for line in lines[:-1]]
    assert parsed == RECORDS
    assert [list(r) for r in parsed] == [list(r) for r in RECORDS]  # same keys, same order
    assert lines[0] == json.dumps(RECORDS[0], separators=(",", ":"))  # compact, as documented
    assert target.uploaded == {KEY: hashlib.sha256(body).hexdigest()}
    head = S3.client.head_object(Bucket=bucket, Key=KEY)
    assert head["Metadata"] == {"sha256": hashlib.sha256(body).hexdigest()}
    # The state comes out after the upload.
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == {"bookmarks": {"ads": {"done": True}}}


def test_values_are_kept_as_received(bucket):
    records = [
        {"b": 1, "a": "__unknown", "_sdc_extracted_at": "2024-01-15T00:00:00Z", "t": "2024-01-15T00:00:00.5+01:00"},
    ]
    schema = {"type": "object", "properties": {"t": {"type": "string", "format": "date-time"}}}
    # Written by hand: json.dumps would not keep the trailing zero of the number.
    second = (
        '{"type": "RECORD", "stream": "raw", "record": {"n": 1705281073.1234560, "big": 12345678901234567890, '
        '"u": "\\u0393\\u03b9\\u03ce\\u03c1\\u03b3\\u03bf\\u03c2 \u16a6\u16a2\u16b1 \u4e1c", "z": null, "neg": -0.0}}\n'
    )
    run(S3.config(bucket, KEY, add_record_metadata=True), singer_lines("raw", records, schema=schema) + second)
    body = S3.get(bucket, KEY).decode("utf-8")
    first, second = body.splitlines()
    assert first == (
        '{"b":1,"a":"__unknown","_sdc_extracted_at":"2024-01-15T00:00:00Z","t":"2024-01-15T00:00:00.5+01:00"}'
    )
    assert second == '{"n":1705281073.1234560,"big":12345678901234567890,"u":"Γιώργος ᚦᚢᚱ 东","z":null,"neg":-0.0}'


def test_an_empty_stream_writes_an_empty_object(bucket):
    target = run(S3.config(bucket, KEY), singer_lines("ads", []))
    assert S3.get(bucket, KEY) == b""
    assert target.uploaded == {KEY: hashlib.sha256(b"").hexdigest()}


def test_no_input_still_writes_the_runs_empty_object(bucket):
    run(S3.config(bucket, KEY), "")
    assert S3.get(bucket, KEY) == b""


def test_stream_placeholder_writes_one_object_per_stream(bucket):
    text = singer_lines("ads", RECORDS[:3]) + singer_lines("other", RECORDS[3:5])
    run(S3.config(bucket, "backup/{stream}.jsonl"), text)
    assert sorted(S3.keys(bucket)) == ["backup/ads.jsonl", "backup/other.jsonl"]
    assert len(S3.get(bucket, "backup/other.jsonl").splitlines()) == 2


def test_two_streams_into_one_key_are_refused(bucket):
    text = singer_lines("ads", RECORDS[:3]) + singer_lines("other", RECORDS[3:5])
    with pytest.raises(ValueError, match="streams 'ads' and 'other' would both write"):
        run(S3.config(bucket, KEY), text)
    assert S3.keys(bucket) == []


def test_a_schema_change_keeps_one_object_in_order(bucket):
    other_schema = {"type": "object", "properties": {}}
    text = singer_lines("ads", RECORDS[:2]) + singer_lines("ads", RECORDS[2:4], schema=other_schema)
    run(S3.config(bucket, KEY), text)
    assert [json.loads(line) for line in S3.get(bucket, KEY).splitlines()] == RECORDS[:4]


def test_nothing_is_uploaded_when_the_input_fails(bucket):
    text = singer_lines("ads", RECORDS[:10]) + '{"type": "RECORD", "stream": "ads", "record": {"ad_id": \n'
    with pytest.raises(InvalidInputLine, match="Unable to parse line as JSON"):
        run(S3.config(bucket, KEY), text)
    assert S3.keys(bucket) == []


def test_a_record_breaking_its_schema_uploads_nothing(bucket):
    bad = dict(RECORDS[0], shown_at="yesterday")
    with pytest.raises(Exception, match="yesterday"):
        run(S3.config(bucket, KEY), singer_lines("ads", [*RECORDS[:5], bad]))
    assert S3.keys(bucket) == []


def test_unreachable_s3_fails_naming_the_endpoint(bucket):
    closed = MotoS3()
    config = closed.config(bucket, KEY)
    closed.stop()  # nothing listens on that port now
    with pytest.raises(UploadError) as error:
        run(config, singer_lines("ads", RECORDS[:2]))
    assert str(error.value).startswith(f"cannot write s3://{bucket}/{KEY} at {config['endpoint_url']}: ")
    assert "Could not connect to the endpoint URL" in str(error.value)


def test_a_missing_bucket_fails_unless_create_bucket(bucket):
    with pytest.raises(UploadError, match="NoSuchBucket"):
        run(S3.config(bucket + "-missing", KEY), singer_lines("ads", RECORDS[:2]))
    run(S3.config(bucket + "-created", KEY, create_bucket=True), singer_lines("ads", RECORDS[:2]))
    assert len(S3.get(bucket + "-created", KEY).splitlines()) == 2


def test_a_read_back_that_differs_is_refused(bucket, monkeypatch):
    real = s3_module.sha256_of
    monkeypatch.setattr(s3_module, "sha256_of", lambda path: real(path)[::-1])
    with pytest.raises(UploadError, match=f"s3://{bucket}/{KEY} at .* reads back with sha256"):
        run(S3.config(bucket, KEY), singer_lines("ads", RECORDS[:2]))


def test_meltano_yml_declares_every_setting():
    import yaml

    project = yaml.safe_load((Path(__file__).resolve().parent.parent / "meltano.yml").read_text())
    (loader,) = project["plugins"]["loaders"]
    declared = {s["name"] for s in loader["settings"]}
    assert declared == {
        "bucket",
        "key",
        "endpoint_url",
        "region",
        "aws_access_key_id",
        "aws_secret_access_key",
        "create_bucket",
    }
    assert declared <= set(TargetS3Raw.config_jsonschema["properties"])
    assert loader["pip_url"] == "-e ."
