"""The lake on the embedded S3 (SeaweedFS): NW_LAKE_URL=s3://..., everything else as on local disk.

One Northwind day and one people day run with the lake in a bucket; their exports must be byte
for byte those of the same days run with the lake on local disk. Then 16 attempts race for one
partition and one step commit in the bucket, and `nw status` names a partition deleted from it.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from lake_race import WRITERS, race_partition_commits, race_step_commits
from support import Pipeline, free_port, wait_for

from northwind_elt.core.day import DayLayout
from northwind_elt.core.lake import Lake
from northwind_elt.local import s3server

NORTHWIND_DAY = "2024-09-17"  # days no other test of the session runs
PEOPLE_DAY = "2024-09-18"
BUCKET = "lake"
KEY = s3server.Key("lake-test", "lake-test-secret")


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The embedded S3 on a free port, in a private folder; its endpoint URL."""
    root = tmp_path_factory.mktemp("lake-s3")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = (root / "weed.out").open("wb")
    proc = subprocess.Popen(
        s3server.command(root / "data", port, [KEY], root / "logs"), stdout=log, stderr=subprocess.STDOUT
    )
    try:
        wait_for(lambda: s3server.ready(endpoint, KEY), "the embedded S3 to write and read an object", proc)
        s3server.client(endpoint, KEY).create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()


def lake_env(endpoint: str, prefix: str) -> dict[str, str]:
    return {
        "NW_LAKE_URL": f"s3://{BUCKET}/{prefix}",
        "NW_LAKE_S3_ENDPOINT_URL": endpoint,
        "NW_LAKE_S3_REGION": "us-east-1",
        "NW_LAKE_S3_ACCESS_KEY_ID": KEY.access_key_id,
        "NW_LAKE_S3_SECRET_ACCESS_KEY": KEY.secret_access_key,
    }


def objects(endpoint: str, prefix: str) -> dict[str, bytes]:
    client = s3server.client(endpoint, KEY)
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for item in page.get("Contents", []):
            found[item["Key"].removeprefix(prefix)] = client.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
    return found


def local_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def on_s3(pipeline: Pipeline, s3: str, tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    """The session's databases, its own data directory (ledger, staging) and the lake in the bucket."""
    data_dir = tmp_path_factory.mktemp("lake-s3-run") / "data"
    return Pipeline({**pipeline.env, "NW_DATA_DIR": str(data_dir), **lake_env(s3, "nw")}, data_dir)


@pytest.fixture(scope="module")
def days(pipeline: Pipeline, on_s3: Pipeline) -> dict[str, float]:
    """The same days with the lake on local disk, then in the bucket; each run's wall seconds."""
    seconds = {}
    for name, runner in (("local", pipeline), ("s3", on_s3)):
        for job, day in (("daily", NORTHWIND_DAY), ("people-daily", PEOPLE_DAY)):
            started = time.monotonic()
            runner.run_ok(job, day)
            seconds[f"{job} {name}"] = time.monotonic() - started
    print(f"wall seconds, lake on local disk vs embedded S3: {seconds}")
    return seconds


def test_every_export_is_byte_identical_with_the_lake_in_a_bucket(
    pipeline: Pipeline, on_s3: Pipeline, s3: str, days: dict[str, float]
) -> None:
    for day in (NORTHWIND_DAY, PEOPLE_DAY):
        local = local_files(pipeline.data_dir / "output" / day)
        in_bucket = objects(s3, f"nw/output/{day}/")
        assert local and in_bucket == local, (sorted(local), sorted(in_bucket))
    # Nothing of the lake on the S3 run's disk: only its private work, ledger and locks.
    assert not (on_s3.data_dir / "output").exists() and not (on_s3.data_dir / "postgres").exists()
    assert not (on_s3.data_dir / "_manifests").exists()


def test_the_partitions_and_manifests_are_in_the_bucket_under_the_same_names(
    pipeline: Pipeline, s3: str, days: dict[str, float]
) -> None:
    in_bucket = objects(s3, "nw/")
    local = {
        p.relative_to(pipeline.data_dir).as_posix() for p in pipeline.data_dir.glob(f"postgres/*/{NORTHWIND_DAY}/*")
    }
    assert len(local) == 2 * 13  # a file and its manifest per source table
    # The same layout; each file's name carries the attempt that wrote it.
    names = {key.rsplit(".", 2)[0] if key.endswith(".parquet") else key for key in in_bucket}
    assert {key.rsplit(".", 2)[0] if key.endswith(".parquet") else key for key in local} <= names
    assert f"_manifests/{NORTHWIND_DAY}/extract-postgres.json" in in_bucket


def test_status_shows_the_lake_and_names_a_partition_lost_from_it(on_s3: Pipeline, s3: str, days: dict) -> None:
    status = on_s3.nw("status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert f"Lake: s3://{BUCKET}/nw (S3 at {s3})" in status.stdout and "LOST" not in status.stdout
    client = s3server.client(s3, KEY)
    (victim,) = [k for k in objects(s3, "nw/postgres/orders/") if NORTHWIND_DAY in k and k.endswith(".parquet")]
    body = client.get_object(Bucket=BUCKET, Key=f"nw/postgres/orders/{victim}")["Body"].read()
    client.delete_object(Bucket=BUCKET, Key=f"nw/postgres/orders/{victim}")
    try:
        status = on_s3.nw("status")
        assert status.returncode != 0
        line = next(line for line in status.stdout.splitlines() if line.startswith("LOST"))
        assert f"s3://{BUCKET}/nw/postgres/orders/{victim}" in line and "is missing" in line
        assert f"nw run --date {NORTHWIND_DAY} --from extract-postgres" in line
    finally:
        client.put_object(Bucket=BUCKET, Key=f"nw/postgres/orders/{victim}", Body=body)


def test_sixteen_attempts_racing_in_the_bucket_give_one_commit_and_fifteen_refusals(s3: str, tmp_path: Path) -> None:
    layout = DayLayout(
        dt.date(2024, 1, 15),
        tmp_path,
        Lake(
            f"s3://{BUCKET}/race",
            {
                "endpoint_url": s3,
                "key": KEY.access_key_id,
                "secret": KEY.secret_access_key,
                "client_kwargs": {"region_name": "us-east-1"},
            },
        ),
    )
    winners, refusals = race_partition_commits(layout, tmp_path / "staging")
    assert len(winners) == 1 and len(refusals) == WRITERS - 1, (winners, refusals)
    assert all("another writer" in refusal for refusal in refusals)
    in_bucket = objects(s3, "race/")
    parquet = [k for k in in_bucket if k.endswith(".parquet")]
    assert len(parquet) == 1 and "_manifests/2024-01-15/extract-ds.json" in in_bucket  # only the winner's
    winners, refusals = race_step_commits(layout)
    assert len(winners) == 1 and len(refusals) == WRITERS - 1
