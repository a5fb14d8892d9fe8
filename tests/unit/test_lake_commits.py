"""Commits to a lake on local disk cannot race: exclusive create and compare-and-swap under the
lake's lock. (The same races against the embedded S3: tests/e2e/project/test_lake_s3.py.)"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

import pyarrow.parquet as pq
import pytest
from lake_race import DAY, WRITERS, race_partition_commits, race_step_commits

from northwind_elt.core.day import DayLayout
from northwind_elt.core.lake import CommitConflict, Lake


@pytest.fixture
def layout(tmp_path: Path) -> DayLayout:
    return DayLayout(DAY, tmp_path / "data")


def test_sixteen_attempts_committing_one_partition_and_step_give_one_commit_and_fifteen_refusals(
    layout: DayLayout, tmp_path: Path
) -> None:
    winners, refusals = race_partition_commits(layout, tmp_path / "staging")
    assert len(winners) == 1 and len(refusals) == WRITERS - 1, (winners, refusals)
    assert all("written by another writer first" in r or "another writer committed first" in r for r in refusals)
    (winner,) = winners
    step = json.loads(Path(str(layout.step_manifest("extract-ds"))).read_text())
    folder = Path(str(layout.partition_dir("ds", "t")))
    # The step manifest names the winner's file, which holds the winner's rows, and nothing else is left.
    assert pq.read_table(folder / step["tables"]["t"]["file"]).column("writer").to_pylist() == [winner] * (winner + 1)
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == sorted(
        [step["tables"]["t"]["file"], "t.manifest.json"]
    )
    manifest = json.loads((folder / "t.manifest.json").read_text())
    assert manifest["file"] == step["tables"]["t"]["file"]


def test_sixteen_writers_of_one_step_manifest_give_one_commit_then_a_replacement_needs_the_current_version(
    layout: DayLayout,
) -> None:
    winners, refusals = race_step_commits(layout)
    assert len(winners) == 1 and len(refusals) == WRITERS - 1
    path = Path(str(layout.step_manifest("extract-race")))
    assert json.loads(path.read_text())["run_id"] == f"run-{winners[0]}"
    # A rerun replaces it from the version it read; all 16 racing from that version: one wins again.
    winners, refusals = race_step_commits(layout)
    assert len(winners) == 1 and len(refusals) == WRITERS - 1
    assert json.loads(path.read_text())["run_id"] == f"run-{winners[0]}"


def test_a_create_never_overwrites_and_a_stale_version_is_refused(tmp_path: Path) -> None:
    lake = Lake.local(tmp_path)
    path = PurePosixPath(tmp_path) / "a" / "commit.json"
    lake.create(path, b"first")
    with pytest.raises(CommitConflict):
        lake.create(path, b"second")
    first = lake.version(path)
    lake.replace(path, b"third", first)
    with pytest.raises(CommitConflict):
        lake.replace(path, b"fourth", first)  # what the writer read is no longer there
    assert Path(str(path)).read_bytes() == b"third"
    assert not [p for p in Path(str(path.parent)).iterdir() if p.name.endswith(".tmp")]
