"""The lake on the embedded S3 (SeaweedFS, NW_LAKE_URL=s3://...) and the state in Postgres
(NW_STATE_BACKEND=postgres), as workers of a cluster share them.

A Northwind day is extracted on "machine" a and loaded, built and exported on machine b (each
with its own host id and data directory); a people day runs on a. Their exports must be byte for
byte those of the same days run on one machine with the local defaults. Then `nw status` on a
third machine shows every step, and names a partition deleted from the bucket; 16 attempts race
for one partition and one step commit in the bucket. (PADAM's exports in the bucket:
tests/e2e/padam/test_padam.py; leases across machines: tests/e2e/project/test_shared_state.py.)
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest
from lake_race import WRITERS, race_partition_commits, race_step_commits
from s3_support import BUCKET, EmbeddedS3, local_files
from support import NORTHWIND_DAY, PEOPLE_DAY, Pipeline, machine

from northwind_elt.core.day import DayLayout

# The session's days (tests/conftest.py): their local exports are the reference.
EXTRACTS = ("extract-postgres", "extract-csv")
LATER = ("load", "transform", "export")


@pytest.fixture(scope="module")
def machines(
    state_env: dict[str, str], embedded_s3: EmbeddedS3, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Pipeline, Pipeline]:
    """Machines a and b: the session's databases, the state in Postgres, the lake in the bucket."""
    root = tmp_path_factory.mktemp("machines")
    env = {**state_env, **embedded_s3.lake_env("nw")}
    return machine(env, "a", root), machine(env, "b", root)


@pytest.fixture(scope="module")
def on_s3(machines: tuple[Pipeline, Pipeline]) -> Pipeline:
    return machines[0]


@pytest.fixture(scope="module")
def days(northwind_day: Pipeline, people_day: Pipeline, machines: tuple[Pipeline, Pipeline]) -> dict[str, float]:
    """The days on one machine with the local defaults (the session's), then on a and b as a cluster
    runs them: the people day on a side by side with the Northwind day, whose two extracts run at
    once on a (as its DAG runs them) before b loads, builds and exports it. The wall seconds of each part."""
    a, b = machines
    a.migrate_meltano_database()  # the state database's, new: the runs below start side by side
    seconds = {}
    started = time.monotonic()
    people = a.start("--date", PEOPLE_DAY, "run", "people-daily")
    try:
        a.extract_ok(NORTHWIND_DAY)
        seconds[f"extracts {NORTHWIND_DAY}, machine a, S3"] = round(time.monotonic() - started, 1)
        for step in LATER:
            b.run_ok(step, NORTHWIND_DAY)
        seconds[f"extracts, then load..export {NORTHWIND_DAY} on machine b, S3"] = round(time.monotonic() - started, 1)
    finally:
        output, _ = people.communicate(timeout=900)
    assert people.returncode == 0, f"people-daily {PEOPLE_DAY} on machine a failed:\n{output[-5000:]}"
    seconds[f"with people-daily {PEOPLE_DAY} alongside on machine a, S3"] = round(time.monotonic() - started, 1)
    print(f"wall seconds: {seconds}")
    return seconds


def test_every_export_is_byte_identical_with_the_lake_in_a_bucket(
    pipeline: Pipeline, on_s3: Pipeline, embedded_s3: EmbeddedS3, days: dict[str, float]
) -> None:
    for day in (NORTHWIND_DAY, PEOPLE_DAY):
        local = local_files(pipeline.data_dir / "output" / day)
        in_bucket = embedded_s3.objects(f"nw/output/{day}/")
        assert local and in_bucket == local, (sorted(local), sorted(in_bucket))
    # Nothing of the lake or the ledger on the machines' disks: only their private work and logs.
    for folder in (on_s3.data_dir, on_s3.data_dir.parent.parent / "b" / "data"):
        for published in ("output", "postgres", "csv", "_manifests", "ledger.sqlite"):
            assert not (folder / published).exists(), folder / published


def test_the_partitions_and_manifests_are_in_the_bucket_under_the_same_names(
    pipeline: Pipeline, embedded_s3: EmbeddedS3, days: dict[str, float]
) -> None:
    in_bucket = set(embedded_s3.objects("nw/"))
    local = {
        p.relative_to(pipeline.data_dir).as_posix() for p in pipeline.data_dir.glob(f"postgres/*/{NORTHWIND_DAY}/*")
    }
    assert len(local) == 2 * 13  # a file and its manifest per source table

    def named(key: str) -> str:  # a file's name without the attempt that wrote it
        return key.rsplit(".", 2)[0] if key.endswith(".parquet") else key

    assert {named(key) for key in local} == {
        named(key) for key in in_bucket if f"/{NORTHWIND_DAY}/" in key and key.startswith("postgres/")
    }
    assert f"_manifests/{NORTHWIND_DAY}/extract-postgres.json" in in_bucket


def test_status_shows_the_lake_and_names_a_partition_lost_from_it(
    on_s3: Pipeline, embedded_s3: EmbeddedS3, days: dict
) -> None:
    status = on_s3.nw("status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert f"Lake: s3://{BUCKET}/nw (S3 at {embedded_s3.endpoint})" in status.stdout
    assert "LOST" not in status.stdout
    client = embedded_s3.client()
    (victim,) = [k for k in embedded_s3.objects("nw/postgres/orders/") if NORTHWIND_DAY in k and k.endswith(".parquet")]
    key = f"nw/postgres/orders/{victim}"
    body = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    client.delete_object(Bucket=BUCKET, Key=key)
    try:
        status = on_s3.nw("status")
        assert status.returncode != 0
        line = next(line for line in status.stdout.splitlines() if line.startswith("LOST"))
        assert f"s3://{BUCKET}/{key}" in line and "is missing" in line
        assert f"nw run --date {NORTHWIND_DAY} --from extract-postgres" in line
    finally:
        client.put_object(Bucket=BUCKET, Key=key, Body=body)


def test_status_on_a_third_machine_shows_every_step_of_both_days(
    machines: tuple[Pipeline, Pipeline], days: dict, tmp_path: Path
) -> None:
    third = machine(machines[0].env, "c", tmp_path)
    for day, steps in ((NORTHWIND_DAY, (*EXTRACTS, *LATER)), (PEOPLE_DAY, ("people-extract",))):
        status = third.nw("status", "--date", day)
        assert status.returncode == 0, status.stderr
        for step in steps:
            assert any(line.split()[:2] == [step, "success"] for line in status.stdout.splitlines()), status.stdout


def test_sixteen_attempts_racing_in_the_bucket_give_one_commit_and_fifteen_refusals(
    embedded_s3: EmbeddedS3, tmp_path: Path
) -> None:
    layout = DayLayout(dt.date(2024, 1, 15), tmp_path, embedded_s3.lake("race"))
    winners, refusals = race_partition_commits(layout, tmp_path / "staging")
    assert len(winners) == 1 and len(refusals) == WRITERS - 1, (winners, refusals)
    assert all("another writer" in refusal for refusal in refusals)
    in_bucket = embedded_s3.objects("race/")
    assert len([k for k in in_bucket if k.endswith(".parquet")]) == 1  # only the winner's file is left
    assert "_manifests/2024-01-15/extract-ds.json" in in_bucket
    winners, refusals = race_step_commits(layout)
    assert len(winners) == 1 and len(refusals) == WRITERS - 1
