"""The ads integrity check (integrity.py) and `nw ads up`'s refusal to replace a lost bucket,
in process, no server: which recorded objects the bucket no longer holds as written, what each
held, and what `nw ads status`, `nw status` and `nw ads up` say about them."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest

from northwind_elt.entry import cli
from northwind_elt.pipelines.ads import commands, integrity
from northwind_elt.pipelines.ads import config as ads_config
from northwind_elt.pipelines.ads.config import AdsSettings
from northwind_elt.pipelines.ads.records import MAX_INSERT_FAILURES
from northwind_elt.pipelines.ads.store import ARCHIVE, BACKUP, REFUSED, RecordedObject

SHA_A, SHA_B, SHA_C = "a" * 64, "b" * 64, "c" * 64
ENDPOINT = "http://127.0.0.1:4568"
CFG = AdsSettings(
    api_url="http://127.0.0.1:8765",
    api_fixture=None,
    s3_endpoint_url=ENDPOINT,
    s3_region="us-east-1",
    bucket="ad-data",
    access_key_id=None,
    secret_access_key=None,
    retention=dt.timedelta(hours=168),
    s3_data_dir=Path("/srv/nw/data/s3"),
)
DAY = dt.date(2024, 1, 15)
CUTOFF = dt.datetime(2024, 1, 8, tzinfo=dt.UTC)

ARCHIVED = RecordedObject(
    "archive/2024-01-08/api_ad_data_20240108T000000Z_r1.jsonl", ARCHIVE, DAY, "r1", 100, 31_000, SHA_A, cutoff=CUTOFF
)
INSERTED = RecordedObject(
    "backup/2024-01-15/r2.jsonl", BACKUP, DAY, "r2", 100, 24_000, SHA_B, inserted=True, quarantined=2
)
PENDING = RecordedObject("backup/2024-01-15/r3.jsonl", BACKUP, DAY, "r3", 100, 24_100, SHA_C)
HELD = RecordedObject("backup/2024-01-14/r4.jsonl", BACKUP, DAY, "r4", None, None, None, failures=MAX_INSERT_FAILURES)
KEPT = RecordedObject("refused/2024-01-15/r5.jsonl", REFUSED, DAY, "r5", None, 2_000, SHA_A)
REPLAYED = dataclasses.replace(KEPT, key="refused/2024-01-15/r6.json", run_id="r6", replayed_as="backup/x/r6.jsonl")
ALL = [ARCHIVED, INSERTED, PENDING, HELD, KEPT, REPLAYED]


def intact() -> dict[str, int]:
    """What the bucket's listing shows when nothing is lost: each object with its size, and the manifests."""
    sizes = {o.key: o.bytes or 10 for o in ALL}
    sizes |= {o.key.removesuffix(".jsonl") + ".manifest.json": 300 for o in ALL if o.kind == BACKUP}
    return sizes


class Hashes:
    """sha256_of as the bucket answers it, remembering which keys were asked for."""

    def __init__(self, found: dict[str, str | None]) -> None:
        self.found, self.asked = found, []

    def __call__(self, key: str) -> str | None:
        self.asked.append(key)
        return self.found.get(key)


def recorded_hashes() -> Hashes:
    return Hashes({o.key: o.sha256 for o in ALL if o.sha256})


def test_what_holds_the_only_copy_of_its_data() -> None:
    assert [o.only_copy for o in ALL] == [True, False, True, True, True, False]


def test_nothing_lost_is_checked_by_listing_and_a_sha256_for_each_only_copy_alone() -> None:
    hashes = recorded_hashes()
    assert integrity.problems_of(ALL, intact(), hashes) == []
    # The inserted backup and the replayed response are only listed; the held backup has no
    # recorded sha256 (a database older than ads_meta.objects): its presence is what is known.
    assert sorted(hashes.asked) == sorted([ARCHIVED.key, PENDING.key, KEPT.key])


def test_a_missing_a_resized_and_a_changed_object_are_each_named_with_what_they_held() -> None:
    sizes = intact()
    del sizes[ARCHIVED.key]
    sizes[INSERTED.key] = 23_999
    hashes = recorded_hashes()
    hashes.found[KEPT.key] = SHA_B
    problems = integrity.problems_of(ALL, sizes, hashes)
    assert [(p.recorded, p.what) for p in problems] == [
        (ARCHIVED, "is missing"),
        (INSERTED, "has 23,999 bytes (24,000 were written)"),
        (KEPT, f"has sha256 {SHA_B} ({SHA_A} was written)"),
    ]
    assert problems[0].line(CFG) == (
        f"LOST: s3://ad-data/{ARCHIVED.key} (the only copy of 100 archived rows, shown before 2024-01-08T00:00:00Z; "
        f"archive of 2024-01-15, run r1) is missing at {ENDPOINT}"
    )


def test_an_object_gone_between_the_listing_and_its_head_is_missing() -> None:
    hashes = recorded_hashes()
    hashes.found[PENDING.key] = None
    assert [(p.recorded, p.what) for p in integrity.problems_of(ALL, intact(), hashes)] == [(PENDING, "is missing")]


def test_a_backup_not_inserted_that_lost_its_manifest_can_never_be_inserted() -> None:
    sizes = intact()
    del sizes["backup/2024-01-15/r3.manifest.json"]
    del sizes["backup/2024-01-15/r2.manifest.json"]  # inserted: its manifest is needed no more
    (problem,) = integrity.problems_of(ALL, sizes, recorded_hashes())
    assert problem.recorded == PENDING
    assert problem.what == "has lost its manifest backup/2024-01-15/r3.manifest.json: no load can insert it"


def test_a_missing_bucket_loses_every_recorded_object_without_asking_for_any() -> None:
    hashes = recorded_hashes()
    problems = integrity.problems_of(ALL, None, hashes)
    assert [p.recorded for p in problems] == ALL and {p.what for p in problems} == {"is missing"}
    assert hashes.asked == []


def test_what_each_kind_of_object_held() -> None:
    assert integrity.holds(INSERTED) == (
        "the backup of run r2 of 2024-01-15: 100 lines as received, inserted, 2 of them quarantined"
    )
    assert integrity.holds(PENDING) == "the only copy of run r3's 100 records of 2024-01-15: verified, not inserted"
    assert integrity.holds(dataclasses.replace(PENDING, failures=1)) == (
        "the only copy of run r3's 100 records of 2024-01-15: verified, not inserted, 1 failed insert"
    )
    assert integrity.holds(HELD) == (
        f"the only copy of run r4's records of 2024-01-15: verified, not inserted, held after "
        f"{MAX_INSERT_FAILURES} failed inserts"
    )
    assert integrity.holds(KEPT) == "the only copy of the refused response of run r5 of 2024-01-15, not replayed"
    assert integrity.holds(REPLAYED) == ("the refused response of run r6 of 2024-01-15, replayed as backup/x/r6.jsonl")


def test_status_says_all_is_there_in_one_line() -> None:
    report = integrity.Report(ALL)
    assert not report.lost
    assert report.lines(CFG) == [
        "  S3 objects: all 6 the ads database records (1 archive, 3 backups, 2 refused responses) are in "
        f"s3://ad-data at {ENDPOINT}, as written"
    ]
    assert integrity.Report([ARCHIVED]).lines(CFG) == [
        f"  S3 objects: the one the ads database records (1 archive) is in s3://ad-data at {ENDPOINT}, as written"
    ]
    assert integrity.Report([]).lines(CFG) == ["  S3 objects: none recorded yet in s3://ad-data"]
    unchecked = integrity.Report(ALL, not_checked="cannot list s3://ad-data/archive/ at …: Could not connect")
    assert not unchecked.lost
    assert unchecked.lines(CFG) == [
        "  S3 objects: not checked: cannot list s3://ad-data/archive/ at …: Could not connect"
    ]


def test_status_names_every_lost_object_loudly_and_how_to_recover() -> None:
    report = integrity.Report(ALL, integrity.problems_of(ALL, None, recorded_hashes()), bucket_missing=True)
    assert report.lost
    lines = report.lines(CFG)
    assert lines[0] == (
        f"  LOST: the bucket s3://ad-data does not exist at {ENDPOINT}; the ads database records 6 objects in it "
        "(1 archive, 3 backups, 2 refused responses), 4 of them the only copy of their data:"
    )
    assert lines[1:-1] == [f"  LOST: s3://ad-data/{o.key} ({integrity.holds(o)}) is missing at {ENDPOINT}" for o in ALL]
    fix = lines[-1]
    assert fix.startswith("  Fix: restore the objects: put back the embedded S3 server's data directory")
    assert "(/srv/nw/data/s3, ADS_S3_DATA_DIR)" in fix and "ADS_S3_ENDPOINT_URL / ADS_S3_BUCKET" in fix
    assert "lost: nw ads up --accept-lost-objects creates an empty bucket" in fix

    one = integrity.Report(ALL, [integrity.Problem(PENDING, "is missing")])
    assert one.lines(CFG)[0] == (
        f"  LOST: 1 of the 6 objects the ads database records in s3://ad-data at {ENDPOINT} is missing or changed "
        "(1 backup), 1 of them the only copy of their data:"
    )
    alone = integrity.Report([PENDING], [integrity.Problem(PENDING, "is missing")], bucket_missing=True)
    assert alone.lines(CFG)[0] == (
        f"  LOST: the bucket s3://ad-data does not exist at {ENDPOINT}; the ads database records 1 object in it "
        "(1 backup), 1 of them the only copy of their data:"
    )
    alone.bucket_missing = False
    assert alone.lines(CFG)[0] == (
        f"  LOST: the one object the ads database records in s3://ad-data at {ENDPOINT} is missing or changed "
        "(1 backup), 1 of them the only copy of their data:"
    )


def test_on_aws_the_fix_names_no_data_directory() -> None:
    aws = dataclasses.replace(CFG, s3_endpoint_url=None)
    assert "data directory" not in integrity.recovery(aws)
    assert integrity.recovery(aws).startswith("restore the objects: point ADS_S3_ENDPOINT_URL / ADS_S3_BUCKET")


def test_up_refuses_naming_what_is_missing_where_and_how_to_recover(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"ADS_PG_HOST": "127.0.0.1", "ADS_PG_PORT": "55432", "ADS_PG_PASSWORD": "secret"}.items():
        monkeypatch.setenv(name, value)
    many = [
        dataclasses.replace(PENDING, key=f"backup/2024-01-15/run{n:02}.jsonl", run_id=f"run{n:02}") for n in range(25)
    ]
    error = commands.lost_bucket_error(CFG, [ARCHIVED, *many])
    message = error.message
    assert message.startswith(
        f"ads up: the bucket s3://ad-data does not exist at {ENDPOINT}, but the ads database postgresql://"
    )
    assert "records 26 objects in it (1 archive, 25 backups; 26 of them the only copy of their data)" in message
    assert "it was not created" in message and "secret" not in message
    assert f"  s3://ad-data/{ARCHIVED.key} ({integrity.holds(ARCHIVED)})" in message
    assert "  s3://ad-data/backup/2024-01-15/run18.jsonl" in message  # the first 20 are named
    assert "run19.jsonl" not in message and "  ... and 6 more (nw ads status lists every one)" in message
    assert f"Fix: {integrity.recovery(CFG)}" in message
    assert message.endswith("Then rerun: nw ads up")


def test_the_flag_that_accepts_the_loss_is_nw_ads_ups_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ads_config, "_accept_lost_objects", False)
    args = cli.build_parser().parse_args(["ads", "up"])
    assert (args.accept_lost_objects, ads_config.lost_objects_accepted()) == (False, False)
    args = cli.build_parser().parse_args(["ads", "up", "--accept-lost-objects"])
    assert (args.accept_lost_objects, ads_config.lost_objects_accepted()) == (True, True)
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["ads", "load", "--accept-lost-objects"])
