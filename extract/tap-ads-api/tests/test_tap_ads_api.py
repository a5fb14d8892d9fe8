"""tap-ads-api against a stub API serving the shared 100-record fixture: the SDK's standard tap
tests, then the tap's own promises (records unchanged, one request, failures named)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from api_stub import FIXTURE, ApiStub
from singer_sdk.testing import get_tap_test_class
from tap_ads_api.tap import AdsApiError, TapAdsApi

FIXTURE_RECORDS = json.loads(FIXTURE.read_text())

# The SDK's test class syncs at collection time, so this stub lives for the whole session.
STANDARD_STUB = ApiStub()
TestTapAdsApi = get_tap_test_class(TapAdsApi, config={"api_url": STANDARD_STUB.url})


@pytest.fixture
def stub() -> Iterator[ApiStub]:
    api = ApiStub()
    yield api
    api.close()


def messages_of(config: dict, capsys: pytest.CaptureFixture[str]) -> list[dict]:
    capsys.readouterr()
    TapAdsApi(config=config, parse_env_config=False).sync_all()
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


def refusal(stub: ApiStub, capsys: pytest.CaptureFixture[str], **config: str) -> str:
    capsys.readouterr()
    with pytest.raises(AdsApiError) as error:
        TapAdsApi(config={"api_url": stub.url, **config}, parse_env_config=False).sync_all()
    assert not [line for line in capsys.readouterr().out.splitlines() if '"RECORD"' in line]
    return str(error.value)


def test_records_are_the_fixture_unchanged_after_one_request(stub, capsys):
    messages = messages_of({"api_url": stub.url}, capsys)
    records = [m["record"] for m in messages if m["type"] == "RECORD"]
    assert records == FIXTURE_RECORDS
    assert [list(r) for r in records] == [list(r) for r in FIXTURE_RECORDS]  # same keys, same order
    assert sum(r["ad_campaign"] == "__unknown" for r in records) == 50
    assert sum("ad_scheme" in r for r in records) == 24
    assert all(type(r["shown_at"]) is float for r in records)
    assert {m["stream"] for m in messages if m["type"] in ("RECORD", "SCHEMA")} == {"ads"}
    (schema,) = [m for m in messages if m["type"] == "SCHEMA"]
    assert schema["key_properties"] == ["ad_id"]
    assert stub.requests == ["/ads"]


def test_numbers_keep_their_text(stub, capsys):
    stub.body = (
        b'[{"ad_id": "0c5c7fd0-a6a3-4450-a513-270e269e0d37", "ad_group": "brand", "ad_campaign": 812,'
        b' "shown_at": 1705281073.1234560}]'
    )
    capsys.readouterr()
    TapAdsApi(config={"api_url": stub.url}, parse_env_config=False).sync_all()
    (line,) = [line for line in capsys.readouterr().out.splitlines() if '"RECORD"' in line]
    assert '"shown_at": 1705281073.1234560' in line or '"shown_at":1705281073.1234560' in line


def test_path_and_trailing_slash(stub, capsys):
    messages = messages_of({"api_url": stub.url + "/", "path": "v1/ads"}, capsys)
    assert sum(m["type"] == "RECORD" for m in messages) == 100
    assert stub.requests == ["/v1/ads"]


def test_malformed_json_is_refused_naming_the_url(stub, capsys):
    stub.body = b'[{"ad_id": "x", '
    assert refusal(stub, capsys).startswith(f"response from GET {stub.url}/ads is not JSON")
    assert len(stub.requests) == 1


def test_a_response_that_is_not_a_list_is_refused(stub, capsys):
    stub.body = b'{"ads": []}'
    assert refusal(stub, capsys) == f"response from GET {stub.url}/ads is not a JSON array (got dict)"


def bad(index: int, **changes) -> bytes:
    records = json.loads(FIXTURE.read_text())
    records[index].update(changes)
    for key, value in changes.items():
        if value is None:
            del records[index][key]
    return json.dumps(records).encode()


@pytest.mark.parametrize(
    ("index", "changes", "where"),
    [
        (7, {"ad_campaign": 1.5}, "$.ad_campaign"),
        (8, {"ad_campaign": "unknown"}, "$.ad_campaign"),  # only "__unknown" is a string campaign
        (9, {"ad_campaign": 1000}, "$.ad_campaign"),  # campaigns are 500..999
        (10, {"ad_group": "sales"}, "$.ad_group"),
        (11, {"ad_id": "not-a-uuid"}, "$.ad_id"),
        (3, {"shown_at": "yesterday"}, "$.shown_at"),
        (42, {"ad_group": None}, "the record"),  # required key missing
        (99, {"surprise": 1}, "the record"),  # additional key
        (1, {"ad_scheme": {"origin": "manual", "approved": "yes"}}, "$.ad_scheme.approved"),
    ],
)
def test_a_bad_record_is_refused_naming_index_and_ad_id(stub, capsys, index, changes, where):
    stub.body = bad(index, **changes)
    message = refusal(stub, capsys)
    ad_id = changes.get("ad_id", FIXTURE_RECORDS[index]["ad_id"])
    assert message.startswith(f"record {index} (ad_id '{ad_id}') from GET {stub.url}/ads breaks the schema at {where}:")
    assert len(stub.requests) == 1


def test_http_500_is_retried_twice_then_fails_naming_status_and_url(stub, capsys):
    stub.status = 500
    message = refusal(stub, capsys)
    assert message == f"HTTP 500 Internal Server Error from GET {stub.url}/ads (gave up after 3 tries)"
    assert len(stub.requests) == 3


def test_http_404_is_not_retried(stub, capsys):
    stub.status = 404
    assert refusal(stub, capsys) == f"HTTP 404 Not Found from GET {stub.url}/ads"
    assert len(stub.requests) == 1


def test_an_unreachable_api_is_named(capsys):
    api = ApiStub()
    api.close()  # nothing listens there any more
    message = refusal(api, capsys)
    assert message.startswith(f"GET {api.url}/ads failed after 3 tries:")


def test_meltano_yml_declares_every_setting():
    import yaml

    project = yaml.safe_load((Path(__file__).resolve().parent.parent / "meltano.yml").read_text())
    (extractor,) = project["plugins"]["extractors"]
    declared = {s["name"] for s in extractor["settings"]}
    assert declared == {"api_url", "path", "timeout_s", "refused_path", "response_file"}
    assert declared <= set(TapAdsApi.config_jsonschema["properties"])
    assert extractor["pip_url"] == "-e ."


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_a_number_json_does_not_have_is_refused(stub, capsys, constant):
    stub.body = bad(5).replace(b'"shown_at": ', f'"shown_at": {constant}, "x": '.encode(), 1)
    message = refusal(stub, capsys)
    assert message.startswith(f"response from GET {stub.url}/ads is not JSON: {constant} is not a JSON number")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'[{"ad_id": "x", ', "is not JSON"),
        (bad(99, surprise=1), "record 99 ("),
        (json.dumps(FIXTURE_RECORDS[:99]).encode(), None),  # 99 records: the tap's checks pass
    ],
)
def test_a_refused_body_is_kept_byte_for_byte_with_its_reason(stub, capsys, tmp_path, body, expected):
    stub.body = body
    kept = tmp_path / "kept" / "response.body"
    if expected is None:
        messages = messages_of({"api_url": stub.url, "refused_path": str(kept)}, capsys)
        assert sum(m["type"] == "RECORD" for m in messages) == 99
        assert not kept.exists() and not (tmp_path / "kept").exists()
        return
    message = refusal(stub, capsys, refused_path=str(kept))
    assert expected in message
    assert kept.read_bytes() == body
    reason = json.loads((tmp_path / "kept" / "response.body.reason.json").read_text())
    assert reason["reason"] == message
    assert (reason["source"], reason["bytes"]) == (f"GET {stub.url}/ads", len(body))
    assert reason["sha256"] == hashlib.sha256(body).hexdigest()
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == ["response.body", "response.body.reason.json"]


def test_a_response_file_replaces_the_api_call(stub, capsys, tmp_path):
    response = tmp_path / "response.json"
    response.write_bytes(FIXTURE.read_bytes())
    messages = messages_of({"api_url": stub.url, "response_file": str(response)}, capsys)
    assert [m["record"] for m in messages if m["type"] == "RECORD"] == FIXTURE_RECORDS
    assert stub.requests == []


def test_a_response_file_gets_the_same_checks(stub, capsys, tmp_path):
    response = tmp_path / "response.json"
    response.write_bytes(bad(99, surprise=1))
    message = refusal(stub, capsys, response_file=str(response))
    assert message.startswith(f"record 99 (ad_id '{FIXTURE_RECORDS[99]['ad_id']}') from the file {response} breaks")
    assert stub.requests == []
    missing = tmp_path / "missing.json"
    assert refusal(stub, capsys, response_file=str(missing)).startswith(f"cannot read the response file {missing}:")
