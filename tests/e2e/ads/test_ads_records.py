"""Ads: every record accounted for (issue 23). Real `meltano run ads-load` against the fixture
API, the embedded S3 server and the session's Postgres, with responses made here from the
fixture file (expected values computed from them):

- a duplicate ad_id within one response and a shown_at out of range: the other lines are
  inserted, those two are quarantined and named with their line and field, `nw ads status`
  counts them; a later response with the same ad_ids names the backup that inserted them;
- a refused response (99 or 101 records, an unknown field) is kept under refused/ with its
  reason, never overwritten, and can be replayed without an API call;
- a verified backup whose insert keeps failing is held after records.MAX_INSERT_FAILURES
  failures and named, instead of being retried by every load.

The loads run once, in the module's set-up (CI time); each test checks one promise.
"""

from __future__ import annotations

import copy
import decimal
import hashlib
import json
import re
import uuid
from collections.abc import Iterator

import pytest
from e2e.ads.ads_support import BUCKET, FIXTURE, Ads, ads_up, decimal_records, mapped
from support import Pipeline, free_port

from northwind_elt.local import ads_api as api
from northwind_elt.pipelines.ads.records import MAX_INSERT_FAILURES

RECORDS_DAY = "2024-03-01"
REFUSED_DAY = "2024-03-02"
HELD_DAY = "2024-02-29"  # the day before RECORDS_DAY: the loads of RECORDS_DAY retry its backups
DUPLICATE, OUT_OF_RANGE = 99, 42  # 0-based indexes in the response; lines are 1-based
GROUPS = ("marketing", "recruiting", "brand", "investment")


def fresh(tag: str) -> list[dict]:
    """The fixture's records with ad_ids of their own (the session's api_ad_data is shared)."""
    records = json.loads(FIXTURE.read_text())
    for record in records:
        record["ad_id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{tag}/{record['ad_id']}"))
    return records


def with_faults() -> tuple[list[dict], bytes]:
    """Record 99 repeats record 0's ad_id with another ad_group; record 42 has shown_at 1e13."""
    records = fresh("records")
    records[DUPLICATE]["ad_id"] = records[0]["ad_id"]
    records[DUPLICATE]["ad_group"] = next(g for g in GROUPS if g != records[0]["ad_group"])
    records[OUT_OF_RANGE]["shown_at"] = "SHOWN_AT"
    body = json.dumps(records).replace('"SHOWN_AT"', "1e13").encode()
    return json.loads(body, parse_float=decimal.Decimal), body


def run_id_in(out: str, day: str) -> str:
    (run_id,) = set(re.findall(rf"ads: ads-load for {day}, run (\S+)", out))
    return run_id


@pytest.fixture(scope="module")
def ads(pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ads]:
    with ads_up(pipeline, tmp_path_factory.mktemp("ads-records")) as ads:
        yield ads


@pytest.fixture(scope="module")
def broken_backup(ads: Ads) -> str:
    """A verified backup whose object no longer matches its manifest (changed in S3 after the
    verification), with the failed inserts two earlier loads would have counted."""
    key = f"backup/{HELD_DAY}/changed-run.jsonl"
    body = b"".join(json.dumps(r).encode() + b"\n" for r in fresh("held"))
    manifest = {
        "key": key,
        "run_id": "changed-run",
        "day": HELD_DAY,
        "rows": 100,
        "distinct_ad_ids": 100,
        "bytes": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
        "verified_at": "2024-02-29T12:00:00+00:00",
    }
    ads.s3.put_object(Bucket=BUCKET, Key=key, Body=body.replace(b"marketing", b"brand"))
    ads.s3.put_object(Bucket=BUCKET, Key=key.removesuffix(".jsonl") + ".manifest.json", Body=json.dumps(manifest))
    with ads.pipeline.connect("ADS_PG") as conn:
        conn.execute(
            "INSERT INTO ads_meta.insert_failures (backup_key, day, run_id, failures, last_error)"
            " VALUES (%s, %s, 'changed-run', %s, 'an earlier failure')",
            (key, HELD_DAY, MAX_INSERT_FAILURES - 1),
        )
    return key


@pytest.fixture(scope="module")
def faulty(ads: Ads, broken_backup: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two loads of RECORDS_DAY from an API answering with_faults(): the first inserts, the
    second (a new API call) finds every ad_id there already."""
    records, body = with_faults()
    (path := tmp_path_factory.mktemp("faulty") / "faulty.json").write_bytes(body)
    server = api.start(free_port(), fixture=path)
    try:
        env = {"ADS_API_URL": server.base_url}
        first = ads.nw("ads", "load", "--date", RECORDS_DAY, **env)
        second = ads.nw("ads", "load", "--date", RECORDS_DAY, **env)
    finally:
        api.stop(server)
    print(first.stdout, first.stderr, second.stdout, second.stderr, sep="\n")  # shown when a test fails
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    return {
        "records": records,
        "first": first.stdout + first.stderr,
        "second": second.stdout + second.stderr,
        "keys": [f"backup/{RECORDS_DAY}/{run_id_in(r.stdout, RECORDS_DAY)}.jsonl" for r in (first, second)],
    }


def quarantine(ads: Ads, key: str) -> list[tuple]:
    with ads.pipeline.connect("ADS_PG") as conn:
        return conn.execute(
            "SELECT line, ad_id, field, reason, raw_line FROM ads_meta.quarantine WHERE backup_key = %s ORDER BY line",
            (key,),
        ).fetchall()


def test_a_duplicate_and_a_value_out_of_range_are_quarantined_the_rest_inserted(ads: Ads, faulty: dict) -> None:
    records, out, key = faulty["records"], faulty["first"], faulty["keys"][0]
    dup, bad = records[DUPLICATE], records[OUT_OF_RANGE]
    stored = [r for i, r in enumerate(records) if i not in (DUPLICATE, OUT_OF_RANGE)]
    assert f"{key}: 100 lines, {len(stored)} new rows in api_ad_data, 0 already there, 2 quarantined" in out
    shown = format(decimal.Decimal("1e13"), "f")  # as the landed jsonb holds it
    assert (
        f"quarantined line {OUT_OF_RANGE + 1} (ad_id '{bad['ad_id']}'), field shown_at: "
        f"shown_at {shown} cannot be stored as timestamptz: timestamp out of range"
    ) in out
    assert (
        f"quarantined line {DUPLICATE + 1} (ad_id '{dup['ad_id']}'), field ad_id: "
        f"duplicate ad_id within the response, line {DUPLICATE + 1} repeats line 1"
    ) in out
    with ads.pipeline.connect("ADS_PG") as conn:
        rows = conn.execute(
            "SELECT ad_id, ad_group, ad_campaign, ad_scheme, shown_at FROM api_ad_data WHERE backup_key = %s", (key,)
        ).fetchall()
    # The first version of the duplicated ad_id is the one stored.
    assert {row[0]: tuple(row) for row in rows} == {r["ad_id"]: mapped(r) for r in stored}

    lines = ads.get(key).decode().splitlines()
    found = quarantine(ads, key)
    assert [(line, ad_id, field) for line, ad_id, field, _, _ in found] == [
        (OUT_OF_RANGE + 1, bad["ad_id"], "shown_at"),
        (DUPLICATE + 1, dup["ad_id"], "ad_id"),
    ]
    assert [raw for *_, raw in found] == [lines[OUT_OF_RANGE], lines[DUPLICATE]]  # as S3 holds them
    assert json.loads(found[1][4])["ad_group"] == dup["ad_group"] != records[0]["ad_group"]


def test_the_quarantine_is_counted_by_nw_ads_status_and_in_the_loads_notes(ads: Ads, faulty: dict) -> None:
    with ads.pipeline.connect("ADS_PG") as conn:
        (total,) = conn.execute("SELECT count(*) FROM ads_meta.quarantine").fetchone()
        (backups,) = conn.execute("SELECT count(DISTINCT backup_key) FROM ads_meta.quarantine").fetchone()
    assert total == 4 and backups == 2  # two lines of each of the two loads
    status = ads.ok("ads", "status")
    assert f"quarantined: {total} records of {backups} backups in ads_meta.quarantine" in status
    assert f"quarantined: {total} records of {backups} backups" in ads.ok("status")
    key = faulty["keys"][0]
    run_id = key.rsplit("/", 1)[1].removesuffix(".jsonl")
    day = ads.ok("status", "--date", RECORDS_DAY)
    assert (
        f"ads-load (run {run_id}): {key}: 100 lines, 98 new rows in api_ad_data, 0 already there, 2 quarantined" in day
    )


def test_a_later_response_names_the_backup_that_inserted_its_ad_ids(ads: Ads, faulty: dict) -> None:
    first, second = faulty["keys"]
    expected = len(faulty["records"]) - 2
    assert (
        f"{second}: 100 lines, 0 new rows in api_ad_data, {expected} already there "
        f"(same ad_id, inserted from {first}), 2 quarantined"
    ) in faulty["second"]
    # Nothing of the first backup is left to retry.
    assert f"{first} is verified but was never inserted" not in faulty["second"]


def test_a_backup_whose_insert_keeps_failing_is_held_and_named_not_retried(
    ads: Ads, faulty: dict, broken_backup: str
) -> None:
    first, second = faulty["first"], faulty["second"]
    assert f"{broken_backup} is verified but was never inserted: inserting it, no API call" in first
    assert f"WARNING: {broken_backup} is still not inserted (" in first
    assert f"checksum mismatch: s3://ad-data/{broken_backup}" in first
    rerun = f"nw ads load --date {HELD_DAY} --run-id changed-run"
    assert f"its insert has failed {MAX_INSERT_FAILURES} times: held, no load retries it by itself" in first
    assert f"Fix the cause, then: {rerun}" in first
    # The next load says so, and does not try.
    assert f"{broken_backup} is verified but was never inserted: inserting it" not in second
    assert f"WARNING: {broken_backup} is verified but not inserted, held: its insert failed" in second
    status = ads.ok("ads", "status")
    assert re.search(
        rf"verified, not inserted: {re.escape(broken_backup)} held: its insert failed {MAX_INSERT_FAILURES} "
        r"times \(last: .*checksum mismatch",
        status,
    ), status
    # Its own command still tries, and counts the failure.
    out = ads.failed("ads", "load", "--date", HELD_DAY, "--run-id", "changed-run")
    assert "run changed-run has a verified backup" in out and "no API call" in out
    assert f"Cause: ObjectError: checksum mismatch: s3://ad-data/{broken_backup}" in out
    assert f"Its insert has failed {MAX_INSERT_FAILURES + 1} times: held, no load retries it by itself" in out
    assert f"Rerun (inserts that backup, no API call): {rerun}" in out


@pytest.fixture(scope="module")
def refusals(ads: Ads, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Three loads of REFUSED_DAY, each answered with a response off the API's contract."""
    base = fresh("refused")
    unknown = copy.deepcopy(base)
    unknown[5]["surprise"] = True
    cases = {
        "99 records": json.dumps(base[:99]).encode(),
        "101 records": json.dumps([*base, fresh("refused-extra")[0]]).encode(),
        "an unknown field": json.dumps(unknown).encode(),
    }
    found = {}
    root = tmp_path_factory.mktemp("refused")
    for name, body in cases.items():
        (path := root / f"{len(found)}.json").write_bytes(body)
        server = api.start(free_port(), fixture=path)
        try:
            result = ads.nw("ads", "load", "--date", REFUSED_DAY, ADS_API_URL=server.base_url)
        finally:
            api.stop(server)
        assert result.returncode != 0, result.stdout[-3000:]
        out = result.stdout + result.stderr
        print(out)
        found[name] = {"body": body, "out": out, "run_id": run_id_in(out, REFUSED_DAY)}
    return found


def test_a_refused_response_is_kept_with_its_reason(ads: Ads, refusals: dict) -> None:
    for name, case in refusals.items():
        out, run_id, body = case["out"], case["run_id"], case["body"]
        records = json.loads(body, parse_float=decimal.Decimal)
        kept = f"refused/{REFUSED_DAY}/{run_id}.json" if name == "an unknown field" else None
        if kept:  # refused by the tap: the body exactly as the API sent it
            assert "record 5 (ad_id" in out and "breaks the schema at the record" in out
            assert ads.get(kept) == body
            assert f"The response is kept as s3://ad-data/{kept} at " in out
        else:  # refused by verify-backup: the records as received, one per line
            kept = f"refused/{REFUSED_DAY}/{run_id}.jsonl"
            assert f"holds {len(records)} records; the API's contract is 100 per call; nothing was inserted" in out
            lines = ads.get(kept).decode().splitlines()
            assert [json.loads(line, parse_float=decimal.Decimal) for line in lines] == records
            assert f"the response is kept as s3://ad-data/{kept} at " in out
        assert f"Once the cause is fixed, replay it (no API call): nw ads replay {kept}" in out.replace(
            "Fix: once", "Once"
        )
        assert f"Rerun (a new API call): nw ads load --date {REFUSED_DAY}" in out
        reason = json.loads(ads.get(kept.rsplit(".", 1)[0] + ".reason.json"))
        stored = ads.get(kept)
        assert (reason["key"], reason["run_id"], reason["day"]) == (kept, run_id, REFUSED_DAY)
        assert (reason["bytes"], reason["sha256"]) == (len(stored), hashlib.sha256(stored).hexdigest())
        assert reason["replay"] == f"nw ads replay {kept}" and reason["reason"] in out
    assert ads.keys(f"backup/{REFUSED_DAY}/") == [] and ads.keys(f"incoming/{REFUSED_DAY}/") == []
    status = ads.ok("ads", "status")
    for case in refusals.values():
        assert f"refused, kept: refused/{REFUSED_DAY}/{case['run_id']}.json" in status


def test_a_replay_of_a_response_refused_again_keeps_it_as_it_was_and_calls_no_api(ads: Ads, refusals: dict) -> None:
    case = refusals["an unknown field"]
    kept = f"refused/{REFUSED_DAY}/{case['run_id']}.json"
    before, calls = ads.keys("refused/"), ads.api_calls()
    result = ads.nw("ads", "replay", kept)
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "record 5 (ad_id" in out and "breaks the schema at the record" in out
    assert f"the response stays kept as s3://ad-data/{kept}" in out
    assert f"Once the cause is fixed, replay it again: nw ads replay {kept}" in out
    assert ads.keys("refused/") == before and ads.get(kept) == case["body"]
    assert ads.api_calls() == calls


def test_a_replay_inserts_a_kept_response_once_its_cause_is_fixed(ads: Ads) -> None:
    # A response kept under refused/ whose cause has since been fixed (here: a valid response,
    # kept as a refusal of an earlier check would have kept it).
    records = fresh("replayed")
    body = json.dumps(records).encode()
    kept = f"refused/{REFUSED_DAY}/fixed-run.json"
    ads.s3.put_object(Bucket=BUCKET, Key=kept, Body=body)
    reason = {
        "key": kept,
        "run_id": "fixed-run",
        "day": REFUSED_DAY,
        "refused_by": "tap-ads-api",
        "reason": "a check since relaxed",
        "bytes": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
        "refused_at": "2024-03-02T10:00:00+00:00",
        "replay": f"nw ads replay {kept}",
    }
    ads.s3.put_object(Bucket=BUCKET, Key=f"refused/{REFUSED_DAY}/fixed-run.reason.json", Body=json.dumps(reason))
    calls = ads.api_calls()
    result = ads.nw("ads", "replay", kept)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    backup = f"backup/{REFUSED_DAY}/fixed-run.jsonl"
    assert f"==> replayed: {kept} is inserted as {backup}" in out
    assert f"{backup}: 100 lines, 100 new rows in api_ad_data, 0 already there, 0 quarantined" in out
    assert ads.api_calls() == calls
    with ads.pipeline.connect("ADS_PG") as conn:
        rows = conn.execute(
            "SELECT ad_id, ad_group, ad_campaign, ad_scheme, shown_at FROM api_ad_data WHERE backup_key = %s",
            (backup,),
        ).fetchall()
    assert {row[0]: tuple(row) for row in rows} == {r["ad_id"]: mapped(r) for r in decimal_records(records)}
    assert json.loads(ads.get(f"refused/{REFUSED_DAY}/fixed-run.replayed.json"))["backup"] == backup
    assert f"refused, kept: {kept}" not in ads.ok("ads", "status")
    # A second replay of it would replace a verified backup: refused, naming another run id.
    again = ads.nw("ads", "replay", kept)
    assert again.returncode == 1
    assert "--run-id fixed-run-replay" in again.stdout + again.stderr


def test_a_database_made_before_the_quarantine_gets_it_with_its_next_write(ads: Ads) -> None:
    # Last in the module: the tables as an ads database made before this change has them.
    with ads.pipeline.connect("ADS_PG") as conn:
        conn.execute("DROP TABLE ads_meta.quarantine, ads_meta.insert_failures")
    status = ads.ok("ads", "status")
    assert "quarantined: no record (ads_meta.quarantine)" in status and "api_ad_data: " in status
    ads.ok("ads", "up")  # as every load's commit does: the missing tables are created
    with ads.pipeline.connect("ADS_PG") as conn:
        found = conn.execute(
            "SELECT to_regclass('ads_meta.quarantine') IS NOT NULL, to_regclass('ads_meta.insert_failures') IS NOT NULL"
        ).fetchone()
    assert found == (True, True)
