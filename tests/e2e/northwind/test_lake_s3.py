"""The lake on the embedded S3 (SeaweedFS): NW_LAKE_URL=s3://..., everything else as on local disk.

One Northwind day and one people day run with the lake in a bucket; their exports must be byte
for byte those of the same days run with the lake on local disk. Then 16 attempts race for one
partition and one step commit in the bucket, and `nw status` names a partition deleted from it.
(PADAM's exports in the bucket: tests/e2e/padam/test_padam.py.)
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest
from lake_race import WRITERS, race_partition_commits, race_step_commits
from s3_support import BUCKET, EmbeddedS3, local_files
from support import Pipeline

from northwind_elt.core.day import DayLayout

NORTHWIND_DAY = "2024-09-17"  # days no other test of the session runs
PEOPLE_DAY = "2024-09-18"


@pytest.fixture(scope="module")
def on_s3(pipeline: Pipeline, embedded_s3: EmbeddedS3, tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    """The session's databases, its own data directory (ledger, staging) and the lake in the bucket."""
    data_dir = tmp_path_factory.mktemp("lake-s3-run") / "data"
    return Pipeline({**pipeline.env, "NW_DATA_DIR": str(data_dir), **embedded_s3.lake_env("nw")}, data_dir)


@pytest.fixture(scope="module")
def days(pipeline: Pipeline, on_s3: Pipeline) -> dict[str, float]:
    """The same days with the lake on local disk, then in the bucket; each run's wall seconds."""
    seconds = {}
    for name, runner in (("local disk", pipeline), ("embedded S3", on_s3)):
        for job, day in (("daily", NORTHWIND_DAY), ("people-daily", PEOPLE_DAY)):
            started = time.monotonic()
            runner.run_ok(job, day)
            seconds[f"{job} {day}, lake on {name}"] = round(time.monotonic() - started, 1)
    print(f"wall seconds: {seconds}")
    return seconds


def test_every_export_is_byte_identical_with_the_lake_in_a_bucket(
    pipeline: Pipeline, on_s3: Pipeline, embedded_s3: EmbeddedS3, days: dict[str, float]
) -> None:
    for day in (NORTHWIND_DAY, PEOPLE_DAY):
        local = local_files(pipeline.data_dir / "output" / day)
        in_bucket = embedded_s3.objects(f"nw/output/{day}/")
        assert local and in_bucket == local, (sorted(local), sorted(in_bucket))
    # Nothing of the lake on the S3 run's disk: only its private work, ledger and locks.
    for published in ("output", "postgres", "csv", "_manifests"):
        assert not (on_s3.data_dir / published).exists(), published


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
