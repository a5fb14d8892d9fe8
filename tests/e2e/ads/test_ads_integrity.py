"""Nothing lost unnoticed (issue 24): the ads pipeline's objects when the embedded S3 loses its data.

The module's set-up makes one of each object the ads database records: a backup inserted by a
real load (`meltano run ads-load`), an archive of part of its rows, a verified backup not
inserted and a refused response (both by `nw ads verify-backup`, the load's own task, from
responses written here under incoming/ as target-s3-raw writes them). Then the embedded S3
server (whichever `nw ads up` runs) is stopped, its data directory deleted, and started again:

- `nw ads up` refuses to create an empty bucket in its place, naming each lost object and how
  to recover (and refuses when the database cannot be asked); `nw ads up --accept-lost-objects`
  creates it;
- `nw ads status` names every lost archive and backup and exits 1, before and after the bucket
  is created again; `nw status` names them too.

Before the loss, the writes are checked to be conditional creates: never an overwrite.
The tests run in file order and share the module's bucket and the session's ads database,
which the module empties before and after it (the objects it records are not another module's).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from e2e.ads.ads_support import BUCKET, FIXTURE, RECORDS, Ads, ads_up, shown_at
from support import Pipeline, free_port

LOAD_DAY, ARCHIVE_DAY, TASK_DAY = "2024-01-15", "2024-01-16", "2024-01-17"
CUTOFF = dt.datetime(2024, 1, 15, 12, tzinfo=dt.UTC)  # ARCHIVE_DAY 00:00 UTC minus ADS_RETENTION_HOURS=12
PENDING_RUN, LEFTOVER_RUN, REFUSED_RUN = "pending-run", "leftover-run", "refused-run"


def response(records: list[dict]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def verify_backup(ads: Ads, run_id: str, body: bytes, *, ok: bool = True) -> str:
    """`nw ads verify-backup` for run_id of TASK_DAY, after the response was written under incoming/
    with the sha256 metadata target-s3-raw gives it."""
    key = f"incoming/{TASK_DAY}/{run_id}.jsonl"
    ads.s3.put_object(Bucket=BUCKET, Key=key, Body=body, Metadata={"sha256": hashlib.sha256(body).hexdigest()})
    run = ads.ok if ok else ads.failed
    return run("ads", "verify-backup", RUN_DATE=TASK_DAY, ADS_RUN_ID=run_id)


def data_objects(ads: Ads) -> list[str]:
    """The objects holding data in the bucket (not the manifests, nor the refusals' reasons)."""
    return [
        key
        for prefix in ("archive/", "backup/", "refused/")
        for key in ads.keys(prefix)
        if not key.endswith((".manifest.json", ".reason.json"))
    ]


def bucket_exists(ads: Ads) -> bool:
    try:
        ads.s3.head_bucket(Bucket=BUCKET)
    except ClientError as err:
        assert err.response["ResponseMetadata"]["HTTPStatusCode"] == 404, err
        return False
    return True


def lost_line(ads: Ads, key: str) -> re.Pattern:
    """`LOST: s3://ad-data/<key> (<what it held>) is missing at <endpoint>`."""
    endpoint = ads.env["ADS_S3_ENDPOINT_URL"]
    return re.compile(rf"^  LOST: s3://{BUCKET}/{re.escape(key)} \((.+)\) is missing at {re.escape(endpoint)}$", re.M)


@pytest.fixture(scope="module")
def ads(pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ads]:
    # ads_up empties the session's ads database first: what an earlier module recorded is not this bucket's.
    with ads_up(pipeline, tmp_path_factory.mktemp("ads-integrity")) as ads:
        yield ads


@pytest.fixture(scope="module")
def made(ads: Ads) -> dict[str, str]:
    """One object of each kind the database records, by name."""
    ads.ok("ads", "load", "--date", LOAD_DAY)
    ads.ok("ads", "archive", "--date", ARCHIVE_DAY, ADS_RETENTION_HOURS="12")  # cutoff 2024-01-15T12:00Z
    records = json.loads(FIXTURE.read_text())
    verify_backup(ads, PENDING_RUN, response(records))
    # What an attempt leaves when it dies after writing its object, before the manifest.
    leftover = f"backup/{TASK_DAY}/{LEFTOVER_RUN}.jsonl"
    ads.s3.put_object(Bucket=BUCKET, Key=leftover, Body=response(records[:50]))
    verify_backup(ads, LEFTOVER_RUN, response(records))
    refused = verify_backup(ads, REFUSED_RUN, response(records[:99]), ok=False)
    assert f"s3://{BUCKET}/refused/{TASK_DAY}/{REFUSED_RUN}.jsonl" in refused
    (inserted,) = [k for k in data_objects(ads) if k.startswith(f"backup/{LOAD_DAY}/")]
    (archived,) = [k for k in data_objects(ads) if k.startswith("archive/")]
    return {
        "inserted": inserted,
        "archived": archived,
        "pending": f"backup/{TASK_DAY}/{PENDING_RUN}.jsonl",
        "leftover": leftover,
        "refused": f"refused/{TASK_DAY}/{REFUSED_RUN}.jsonl",
    }


def test_a_verified_backup_is_never_overwritten_and_a_retry_of_the_same_response_is_no_error(
    ads: Ads, made: dict[str, str]
) -> None:
    records = json.loads(FIXTURE.read_text())
    key = made["pending"]
    before = ads.get(key)
    other = response(list(reversed(records)))
    out = verify_backup(ads, PENDING_RUN, other, ok=False)
    assert f"s3://{BUCKET}/{key} at {ads.env['ADS_S3_ENDPOINT_URL']} exists already with other content" in out
    assert "it was not overwritten; this response is not backed up, nothing of it was inserted" in out
    assert ads.get(key) == before
    out = verify_backup(ads, PENDING_RUN, before)  # the same response again: the backup stands
    assert f"s3://{BUCKET}/{key}" in out and "manifest written" in out
    assert ads.get(key) == before and ads.keys(f"incoming/{TASK_DAY}/") == []


def test_an_unverified_leftover_of_an_earlier_attempt_is_replaced_then_verified(ads: Ads, made: dict[str, str]) -> None:
    key, body = made["leftover"], response(json.loads(FIXTURE.read_text()))
    assert ads.get(key) == body
    manifest = json.loads(ads.get(key.removesuffix(".jsonl") + ".manifest.json"))
    assert (manifest["key"], manifest["sha256"]) == (key, hashlib.sha256(body).hexdigest())


def test_status_says_every_recorded_object_is_there(ads: Ads, made: dict[str, str]) -> None:
    assert sorted(data_objects(ads)) == sorted(made.values())
    status = ads.ok("ads", "status")
    assert (
        f"  S3 objects: all 5 the ads database records (1 archive, 3 backups, 1 refused response) are in "
        f"s3://{BUCKET} at {ads.env['ADS_S3_ENDPOINT_URL']}, as written"
    ) in status.splitlines()
    assert "LOST" not in status


@pytest.fixture(scope="module")
def lost(ads: Ads, made: dict[str, str]) -> str:
    """The embedded S3 server stopped, its data directory deleted, then `nw ads up`: its output."""
    assert "stopped" in ads.ok("ads", "down")
    data_dir = Path(ads.env["ADS_S3_DATA_DIR"])
    assert data_dir.is_dir()
    shutil.rmtree(data_dir)
    return ads.failed("ads", "up")


def test_up_refuses_to_create_an_empty_bucket_naming_every_lost_object(
    ads: Ads, made: dict[str, str], lost: str
) -> None:
    endpoint = ads.env["ADS_S3_ENDPOINT_URL"]
    assert f"ERROR: ads up: the bucket s3://{BUCKET} does not exist at {endpoint}, but the ads database" in lost
    assert "records 5 objects in it (1 archive, 3 backups, 1 refused response; 4 of them the only copy" in lost
    for key in made.values():
        assert f"  s3://{BUCKET}/{key} (" in lost
    assert f"put back the embedded S3 server's data directory ({ads.env['ADS_S3_DATA_DIR']}, ADS_S3_DATA_DIR)" in lost
    assert "lost: nw ads up --accept-lost-objects creates an empty bucket" in lost
    assert not bucket_exists(ads)  # the server runs again, without the bucket


def test_up_refuses_when_it_cannot_ask_the_database(ads: Ads, lost: str) -> None:
    closed = str(free_port())
    out = ads.failed("ads", "up", ADS_PG_PORT=closed)
    assert f"ERROR: ads up: cannot reach the ads database postgresql://ads@127.0.0.1:{closed}/ads" in out
    assert "the bucket was not created: whether the ads database records objects in it is unknown" in out
    assert not bucket_exists(ads)


def test_status_names_every_lost_archive_and_backup_and_fails(ads: Ads, made: dict[str, str], lost: str) -> None:
    result = ads.nw("ads", "status")
    assert result.returncode == 1, result.stdout + result.stderr
    endpoint = ads.env["ADS_S3_ENDPOINT_URL"]
    assert (
        f"  LOST: the bucket s3://{BUCKET} does not exist at {endpoint}; the ads database records 5 objects in it "
        "(1 archive, 3 backups, 1 refused response), 4 of them the only copy of their data:"
    ) in result.stdout
    held = {name: lost_line(ads, key).search(result.stdout) for name, key in made.items()}
    assert all(held.values()), result.stdout
    old = sum(1 for r in RECORDS if shown_at(r) < CUTOFF)
    assert re.fullmatch(
        rf"the only copy of {old} archived rows, shown before 2024-01-15T12:00:00Z; archive of {ARCHIVE_DAY}, run \S+",
        held["archived"][1],
    )
    assert (
        held["pending"][1] == f"the only copy of run {PENDING_RUN}'s 100 records of {TASK_DAY}: verified, not inserted"
    )
    assert (
        held["refused"][1] == f"the only copy of the refused response of run {REFUSED_RUN} of {TASK_DAY}, not replayed"
    )
    assert held["inserted"][1].endswith(f"of {LOAD_DAY}: 100 lines as received, inserted")


def test_nw_status_names_them_too_and_fails(ads: Ads, made: dict[str, str], lost: str) -> None:
    overview = ads.failed("status")  # exit 1: data the ads database records is gone
    for key in made.values():
        assert lost_line(ads, key).search(overview), overview


def test_up_with_the_flag_creates_the_bucket_and_the_loss_stays_listed(
    ads: Ads, made: dict[str, str], lost: str
) -> None:
    out = ads.ok("ads", "up", "--accept-lost-objects")
    assert f"bucket {BUCKET} created" in out
    assert f"WARNING: the 5 objects the ads database records in s3://{BUCKET}" in out
    assert bucket_exists(ads) and data_objects(ads) == []
    result = ads.nw("ads", "status")
    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        f"  LOST: 5 of the 5 objects the ads database records in s3://{BUCKET} at {ads.env['ADS_S3_ENDPOINT_URL']} "
        "are missing or changed (1 archive, 3 backups, 1 refused response), 4 of them the only copy of their data:"
    ) in result.stdout
    for key in made.values():
        assert lost_line(ads, key).search(result.stdout), result.stdout
    assert f"bucket {BUCKET} exists" in ads.ok("ads", "up")  # the bucket is there now: nothing to refuse
