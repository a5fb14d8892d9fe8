"""The ads pipeline end to end: the fixture API and the embedded S3 server (SeaweedFS, on disk)
started by `nw ads up` on free ports, the session's Postgres, real `meltano run ads-load`.

Expected values are computed here from the fixture file, never read back from the program.
The tests share one API, bucket and table, and run in file order.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e.ads.ads_support import BUCKET, FIXTURE, RECORDS, Ads, ads_up, backup_objects, decimal_records, mapped, shown_at
from support import Pipeline, free_port

from northwind_elt.local import ads_api as api


@pytest.fixture(scope="module")
def ads(pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ads]:
    with ads_up(pipeline, tmp_path_factory.mktemp("ads")) as ads:
        yield ads


@pytest.fixture(scope="module")
def first_load(ads: Ads) -> dict:
    before = ads.api_calls()
    out = ads.ok("ads", "load", "--date", "2024-01-15")
    return {"out": out, "api_calls": ads.api_calls() - before}


def test_the_backup_holds_the_response_as_received_and_its_manifest(ads: Ads, first_load: dict) -> None:
    assert first_load["api_calls"] == 1
    (key,) = backup_objects(ads, "2024-01-15")
    body = ads.get(key)
    lines = body.decode().splitlines()
    parsed = [json.loads(line, parse_float=decimal.Decimal) for line in lines]
    assert parsed == RECORDS  # values and digits; "__unknown" and absent ad_scheme kept
    assert [list(p) for p in parsed] == [list(r) for r in RECORDS]  # key order too
    raw = ads.get(key.removesuffix(".jsonl") + ".manifest.json")
    manifest = json.loads(raw)
    assert manifest["rows"] == 100 and manifest["sha256"] == hashlib.sha256(body).hexdigest()
    # The format buckets already hold: these keys in this order, indented by 2, one final newline.
    assert list(manifest) == ["key", "run_id", "day", "rows", "distinct_ad_ids", "bytes", "sha256", "verified_at"]
    assert raw == (json.dumps(manifest, indent=2) + "\n").encode()


def test_api_ad_data_holds_one_mapped_row_per_record(ads: Ads, first_load: dict) -> None:
    rows = ads.rows()
    assert rows == {r["ad_id"]: mapped(r) for r in RECORDS}
    assert sum(1 for r in rows.values() if r[2] is None) == sum(1 for r in RECORDS if r["ad_campaign"] == "__unknown")
    assert sum(1 for r in rows.values() if r[3] is not None) == sum(1 for r in RECORDS if "ad_scheme" in r)
    with ads.pipeline.connect("ADS_PG") as conn:
        (key,) = backup_objects(ads, "2024-01-15")
        assert conn.execute("SELECT count(*) FROM api_ad_data WHERE backup_key = %s", (key,)).fetchone() == (100,)
        assert conn.execute("SELECT count(*) FROM api_ad_data WHERE inserted_at IS NULL").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM ads_landing.ads_backup").fetchone() == (0,)
    assert "100 new rows" in ads.ok("ads", "status")
    overview = ads.ok("status")
    # The run's ads-load, on its day's line.
    run_id = key.rsplit("/", 1)[1].removesuffix(".jsonl")
    assert re.search(rf"^\s*2024-01-15\s+{re.escape(run_id)}\s+success", overview, re.M), overview
    assert "api_ad_data: 100 rows" in overview, overview


def test_a_rerun_adds_nothing_and_a_run_id_with_a_verified_backup_makes_no_api_call(ads: Ads, first_load: dict) -> None:
    (first_key,) = backup_objects(ads, "2024-01-15")
    first_body = ads.get(first_key)
    calls = ads.api_calls()
    out = ads.ok("ads", "load", "--date", "2024-01-15")  # a new run: the API again (same fixture records)
    assert "0 new rows in api_ad_data, 100 already there" in out
    assert ads.api_calls() == calls + 1
    assert len(backup_objects(ads, "2024-01-15")) == 2 and ads.get(first_key) == first_body

    run_id = first_key.rsplit("/", 1)[1].removesuffix(".jsonl")
    out = ads.ok("ads", "load", "--date", "2024-01-15", "--run-id", run_id)
    assert f"run {run_id} has a verified backup" in out and "no API call" in out
    assert "inserted before" in out
    assert ads.api_calls() == calls + 1
    assert ads.rows() == {r["ad_id"]: mapped(r) for r in RECORDS}


def test_api_down_malformed_or_off_contract_writes_nothing(ads: Ads, first_load: dict, tmp_path: Path) -> None:
    day = "2024-01-16"
    rows = ads.rows()
    bad_records = json.loads(FIXTURE.read_text())
    bad_records[7]["ad_campaign"] = "unknown"
    bad_file = tmp_path / "bad.json"
    bad_file.write_text(json.dumps(bad_records))
    closed = free_port()
    malformed = api.start(free_port(), malformed=True)
    off_contract = api.start(free_port(), fixture=bad_file)
    try:
        cases = [
            (f"http://127.0.0.1:{closed}", f"GET http://127.0.0.1:{closed}/ads failed after 3 tries"),
            (malformed.base_url, f"response from GET {malformed.base_url}/ads is not JSON"),
            (
                off_contract.base_url,
                f"record 7 (ad_id '{bad_records[7]['ad_id']}') from GET {off_contract.base_url}/ads breaks the "
                "schema at $.ad_campaign",
            ),
        ]
        for url, message in cases:
            out = ads.failed("ads", "load", "--date", day, ADS_API_URL=url)
            assert message in out
            assert (
                "FAILED: ads load for 2024-01-16" in out
                and "Rerun (a new API call): nw ads load --date 2024-01-16" in out
            )
            assert ads.keys(f"backup/{day}/") == [] and ads.keys(f"incoming/{day}/") == []
            assert ads.rows() == rows
    finally:
        api.stop(malformed)
        api.stop(off_contract)


def test_s3_down_during_the_backup_inserts_nothing_and_calls_no_api(ads: Ads, first_load: dict) -> None:
    rows, calls = ads.rows(), ads.api_calls()
    closed = f"http://127.0.0.1:{free_port()}"
    out = ads.failed("ads", "load", "--date", "2024-01-16", ADS_S3_ENDPOINT_URL=closed)
    assert "cannot read s3://ad-data/backup/2024-01-16/" in out and f"at {closed}: Could not connect" in out
    assert "the API was not called, nothing was written" in out
    assert ads.rows() == rows and ads.api_calls() == calls


def test_s3_down_during_the_archive_deletes_nothing(ads: Ads, first_load: dict) -> None:
    rows = ads.rows()
    closed = f"http://127.0.0.1:{free_port()}"
    out = ads.failed("ads", "archive", "--date", "2024-01-16", ADS_RETENTION_HOURS="12", ADS_S3_ENDPOINT_URL=closed)
    assert f"at {closed}: Could not connect" in out and "nothing was deleted" in out
    assert "Then rerun: nw ads archive --date 2024-01-16" in out
    assert ads.rows() == rows


def test_an_archive_with_a_cutoff_in_the_middle_moves_exactly_the_older_rows_and_survives_an_s3_restart(
    ads: Ads, first_load: dict
) -> None:
    cutoff = dt.datetime(2024, 1, 15, 12, tzinfo=dt.UTC)  # start of 2024-01-16 minus 12 hours
    old = {r["ad_id"]: r for r in RECORDS if shown_at(r) < cutoff}
    assert 0 < len(old) < len(RECORDS)
    out = ads.ok("ads", "archive", "--date", "2024-01-16", ADS_RETENTION_HOURS="12")
    assert f"{len(old)} rows shown before 2024-01-15T12:00:00Z" in out
    (key,) = [k for k in ads.keys("archive/2024-01-15/") if k.endswith(".jsonl")]
    assert key.startswith("archive/2024-01-15/api_ad_data_20240115T120000Z_")
    archived = [json.loads(line) for line in ads.get(key).decode().splitlines()]
    assert {a["ad_id"] for a in archived} == set(old)
    for line in archived:
        record = old[line["ad_id"]]
        expected = mapped(record)
        got = (line["ad_id"], line["ad_group"], line["ad_campaign"], line["ad_scheme"])
        assert got == expected[:4]
        assert dt.datetime.fromisoformat(line["shown_at"]) == expected[4]
    assert set(ads.rows()) == {r["ad_id"] for r in RECORDS} - set(old)
    raw = ads.get(key.removesuffix(".jsonl") + ".manifest.json")
    manifest = json.loads(raw)
    assert list(manifest) == ["key", "run_id", "day", "cutoff", "rows", "bytes", "sha256"]
    assert (manifest["key"], manifest["day"], manifest["cutoff"], manifest["rows"]) == (
        key,
        "2024-01-16",
        "2024-01-15T12:00:00Z",
        len(old),
    )
    assert raw == (json.dumps(manifest, indent=2) + "\n").encode()

    body = ads.get(key)
    assert "nothing shown before 2024-01-15T12:00:00Z" in ads.ok(
        "ads", "archive", "--date", "2024-01-16", ADS_RETENTION_HOURS="12"
    )
    assert [k for k in ads.keys("archive/") if k.endswith(".jsonl")] == [key]

    assert "S3 server (SeaweedFS) stopped (process" in ads.ok("ads", "down")
    with pytest.raises(Exception, match="Could not connect"):
        ads.get(key)  # really down
    assert "S3 server (SeaweedFS) started on" in ads.ok("ads", "up")
    assert ads.get(key) == body


def test_an_archive_an_earlier_run_wrote_but_never_committed_is_adopted_not_written_twice(
    ads: Ads, first_load: dict
) -> None:
    # What a run leaves when Postgres fails after its archive object and manifest are in S3:
    # the rows are still in api_ad_data. Written here as that run would have.
    cutoff = dt.datetime(2024, 1, 15, 18, tzinfo=dt.UTC)  # start of 2024-01-16 minus 6 hours
    present = ads.rows()
    old = sorted((r for r in RECORDS if r["ad_id"] in present and shown_at(r) < cutoff), key=shown_at)
    assert old
    body = b"".join(json.dumps({"ad_id": r["ad_id"]}).encode() + b"\n" for r in old)
    key = "archive/2024-01-15/api_ad_data_20240115T180000Z_crashed-run.jsonl"
    ads.s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    manifest = {
        "key": key,
        "run_id": "crashed-run",
        "day": "2024-01-16",
        "cutoff": "2024-01-15T18:00:00Z",
        "rows": len(old),
        "bytes": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
    }
    ads.s3.put_object(Bucket=BUCKET, Key=key.removesuffix(".jsonl") + ".manifest.json", Body=json.dumps(manifest))
    archives_before = [k for k in ads.keys("archive/") if k.endswith(".jsonl")]

    out = ads.ok("ads", "archive", "--date", "2024-01-16", ADS_RETENTION_HOURS="6")
    rows = f"{len(old):,} row{'s' * (len(old) != 1)}"
    assert f"an earlier run's archive {key} ({rows}) was not committed: {rows} deleted now" in out
    assert "nothing shown before 2024-01-15T18:00:00Z" in out  # its rows are not archived a second time
    assert [k for k in ads.keys("archive/") if k.endswith(".jsonl")] == archives_before
    assert set(ads.rows()) == set(present) - {r["ad_id"] for r in old}
    with ads.pipeline.connect("ADS_PG") as conn:
        assert conn.execute("SELECT adopted FROM ads_meta.archives WHERE archive_key = %s", (key,)).fetchone() == (
            True,
        )


def test_postgres_down_after_the_backup_then_the_rerun_inserts_that_backup_without_the_api(
    ads: Ads, first_load: dict, tmp_path: Path
) -> None:
    # An API whose ads are not in the table yet: the rerun must insert them, from the backup.
    fresh = [{**r, "ad_id": str(uuid.uuid5(uuid.NAMESPACE_URL, r["ad_id"]))} for r in json.loads(FIXTURE.read_text())]
    (tmp_path / "fresh.json").write_text(json.dumps(fresh))
    server = api.start(free_port(), fixture=tmp_path / "fresh.json")
    try:
        day, env = "2024-01-18", {"ADS_API_URL": server.base_url}
        calls = ads.api_calls(server.base_url)
        failed = [ads.failed("ads", "load", "--date", day, ADS_PG_PORT=str(free_port()), **env) for _ in range(2)]
        assert ads.api_calls(server.base_url) == calls + 2
        keys = backup_objects(ads, day)
        assert len(keys) == 2 and ads.keys(f"incoming/{day}/") == []
        (first,) = [k for k in keys if k in failed[0]]
        run_id = first.rsplit("/", 1)[1].removesuffix(".jsonl")
        rerun = f"nw ads load --date {day} --run-id {run_id}"
        assert f"The backup s3://ad-data/{first}" in failed[0]
        assert f"Rerun (inserts that backup, no API call): {rerun}" in failed[0]
        assert "Check the ads database postgresql://ads@127.0.0.1:" in failed[0]

        out = ads.ok(*rerun.split()[1:], **env)
        # The other failed run's verified backup is inserted by this load too (any later load of the day would).
        (second,) = [k for k in keys if k != first]
        assert f"{second} is verified but was never inserted: inserting it, no API call" in out
        assert ads.api_calls(server.base_url) == calls + 2
        with ads.pipeline.connect("ADS_PG") as conn:
            inserted = conn.execute("SELECT ad_id FROM api_ad_data WHERE backup_key = %s", (first,)).fetchall()
            loaded = {k for (k,) in conn.execute("SELECT backup_key FROM ads_meta.loads WHERE day = %s", (day,))}
        assert sorted(a for (a,) in inserted) == sorted(r["ad_id"] for r in fresh)
        assert loaded == set(keys)
    finally:
        api.stop(server)
    rows = ads.rows()
    assert {r["ad_id"]: rows[r["ad_id"]] for r in fresh} == {r["ad_id"]: mapped(r) for r in decimal_records(fresh)}
