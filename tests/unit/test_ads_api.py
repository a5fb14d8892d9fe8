"""The ads API stand-in: its generator honours the contract (spec §1), its server serves it."""

from __future__ import annotations

import json
import math
import random
import time
import urllib.error
import urllib.request
from pathlib import Path

import jsonschema
import pytest
from support import free_port

from northwind_elt.local import ads_api as api

ADS_DATA = Path(__file__).resolve().parents[2] / "data" / "ads-api"  # a copy of shared/data/ads-api
SCHEMA = json.loads((ADS_DATA / "record.schema.json").read_text())
FIXTURE = ADS_DATA / "sample_response.json"
FIXTURE_NOW = 1705363200.123456  # the clock the fixture was made with (SOURCE.md)
KEY_ORDER = ["ad_id", "ad_group", "ad_campaign", "shown_at"]


def check_contract(records: list[dict], now: float) -> None:
    """Every rule of spec §1, checked on the records alone."""
    validator = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())
    assert len(records) == 100
    assert len({r["ad_id"] for r in records}) == 100
    for record in records:
        validator.validate(record)
        assert list(record) in (KEY_ORDER, [*KEY_ORDER, "ad_scheme"])
        assert len(record["ad_id"]) == 36 and record["ad_id"][14] == "4"
        campaign = record["ad_campaign"]
        assert campaign == "__unknown" or (type(campaign) is int and 500 <= campaign <= 999)
        age = now - record["shown_at"]
        assert type(record["shown_at"]) is float
        assert 0 <= age < 100000
        assert age == int(age)  # whole seconds before now: the sub-second part of now is kept
        if campaign == "__unknown":
            assert age < 50000 and "ad_scheme" not in record
        else:
            assert 100 * campaign <= age <= 100 * campaign + 99  # one r drives both
        if "ad_scheme" in record:
            assert campaign != "__unknown" and 800 <= campaign <= 999
            assert record["ad_scheme"]["approved"] is True
        elif campaign != "__unknown":
            assert campaign <= 800  # r <= 0.8 (800 only for r == 0.8 exactly)


def test_generator_follows_the_contract() -> None:
    now = 1_700_000_000.654321
    for seed in range(20):
        check_contract(api.api_response(random.Random(seed), now), now)


def test_generator_spreads_values_like_the_api() -> None:
    records = [r for seed in range(50) for r in api.api_response(random.Random(seed), 1e9)]
    assert len(records) == 5000
    unknown = sum(r["ad_campaign"] == "__unknown" for r in records) / len(records)
    scheme = sum("ad_scheme" in r for r in records) / len(records)
    assert 0.45 < unknown < 0.55
    assert 0.17 < scheme < 0.23
    assert {r["ad_group"] for r in records} == set(api.AD_GROUPS)
    assert {r["ad_scheme"]["origin"] for r in records if "ad_scheme" in r} == set(api.ORIGINS)


def test_generator_reproduces_the_shared_fixture() -> None:
    # SOURCE.md: the fixture is this contract with random.Random(7) and the clock at FIXTURE_NOW.
    expected = json.loads(FIXTURE.read_text())
    got = api.api_response(random.Random(7), FIXTURE_NOW)
    assert got == expected
    assert [list(r) for r in got] == [list(r) for r in expected]
    check_contract(expected, FIXTURE_NOW)
    assert sum(r["ad_campaign"] == "__unknown" for r in expected) == 50
    assert sum("ad_scheme" in r for r in expected) == 24


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.fixture
def port() -> int:
    return free_port()


def test_fixture_mode_serves_the_file_byte_for_byte(port: int) -> None:
    proc = api.start(port, fixture=FIXTURE)
    try:
        assert proc.base_url == f"http://127.0.0.1:{port}"
        for _ in range(2):
            assert get(f"{proc.base_url}/ads") == (200, FIXTURE.read_bytes())
        assert get(f"{proc.base_url}/health") == (200, b"ok")
        assert get(f"{proc.base_url}/nothing")[0] == 404
    finally:
        api.stop(proc)
    assert proc.returncode == 0  # SIGTERM is a clean stop


def test_live_mode_serves_new_valid_records_each_call(port: int) -> None:
    proc = api.start(port)
    try:
        before = time.time()
        status, body = get(f"{proc.base_url}/ads")
        after = time.time()
        assert status == 200
        first = json.loads(body)
        # The server's clock reading: the one instant in [before, after] that is a whole number
        # of seconds after every shown_at (one `now` per response, its fraction kept).
        server_now = first[0]["shown_at"] + math.ceil(before - first[0]["shown_at"])
        assert before <= server_now <= after
        check_contract(first, server_now)
        second = json.loads(get(f"{proc.base_url}/ads")[1])
        assert not {r["ad_id"] for r in first} & {r["ad_id"] for r in second}
    finally:
        api.stop(proc)


def test_fault_modes(port: int) -> None:
    proc = api.start(port, fail_with=503)
    try:
        assert get(f"{proc.base_url}/ads")[0] == 503
        assert get(f"{proc.base_url}/health") == (200, b"ok")
    finally:
        api.stop(proc)
    proc = api.start(port, malformed=True)
    try:
        status, body = get(f"{proc.base_url}/ads")
        assert status == 200
        with pytest.raises(json.JSONDecodeError):
            json.loads(body)
    finally:
        api.stop(proc)


def test_start_reports_a_busy_port(port: int) -> None:
    proc = api.start(port)
    try:
        refusal = f"exited with status 1: cannot serve on 127.0.0.1:{port}: .*Address already in use"
        with pytest.raises(RuntimeError, match=refusal):
            api.start(port)
    finally:
        api.stop(proc)


def test_main_prints_the_ready_line_and_stops_on_sigterm(port: int, tmp_path: Path) -> None:
    import subprocess
    import sys

    # A session of its own and no terminal: as `start()` runs it, apart from the test runner's
    # process group and its job control; its stderr kept to say why if it does not stop.
    stderr = tmp_path / "ads_api.stderr"
    with stderr.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "northwind_elt.local.ads_api", "--port", str(port), "--fixture", str(FIXTURE)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            cwd=Path(api.__file__).resolve().parents[2],
            start_new_session=True,
        )
    try:
        assert proc.stdout.readline() == f"listening on http://127.0.0.1:{port}\n"
        assert get(f"http://127.0.0.1:{port}/ads")[1] == FIXTURE.read_bytes()
    finally:
        api.stop(proc)
    assert proc.returncode == 0, stderr.read_text()
