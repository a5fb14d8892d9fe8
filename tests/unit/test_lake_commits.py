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


@pytest.mark.parametrize(
    ("url", "said"),
    [("s3://", "names no bucket"), ("relative/lake", "is not an absolute path"), ("gs://b/p", "only a local path")],
)
def test_a_lake_url_that_cannot_be_used_is_refused_with_its_fix(
    url: str, said: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from northwind_elt.core.day import configured_lake
    from northwind_elt.core.errors import ConfigError

    monkeypatch.setenv("NW_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("NW_LAKE_URL", url)
    with pytest.raises(ConfigError) as refused:
        configured_lake()
    assert said in str(refused.value) and "fix NW_LAKE_URL in" in str(refused.value)


def test_the_lake_defaults_to_the_data_directory_and_takes_a_bucket(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    from northwind_elt.core.day import configured_lake

    monkeypatch.setenv("NW_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("NW_LAKE_URL", raising=False)
    assert configured_lake() == Lake.local(tmp_path) and not configured_lake().remote
    monkeypatch.setenv("NW_LAKE_URL", "s3://lake/some/prefix/")
    monkeypatch.setenv("NW_LAKE_S3_ENDPOINT_URL", "http://127.0.0.1:9")
    lake = configured_lake()
    assert lake.remote and lake.bucket == "lake" and str(lake.root) == "lake/some/prefix"
    assert lake.storage_options["endpoint_url"] == "http://127.0.0.1:9"
    assert lake.where(lake.root / "x.json") == "s3://lake/some/prefix/x.json"


def test_a_late_cleanup_never_removes_a_file_a_later_commit_names(layout: DayLayout, tmp_path: Path) -> None:
    """An attempt removes only the files the manifests named when it began: the cleanup of a commit
    that runs late (an orphaned commit task) leaves alone what a later attempt wrote and committed."""
    import pyarrow as pa

    from northwind_elt.protocol.publish import _remove_replaced, files_at_begin, publish, versions_at_begin

    def staged(name: str, rows: int) -> Path:
        path = tmp_path / name / "t.parquet"
        path.parent.mkdir()
        pq.write_table(pa.table({"id": pa.array(range(rows), pa.int64())}), path)
        return path

    def begin() -> tuple[dict, list[str]]:
        return versions_at_begin(layout, "ds", "extract-ds"), files_at_begin(layout, "ds", "extract-ds")

    versions_a, files_a = begin()
    tables_a = publish(layout, "ds", "extract-ds", "a" * 32, {"t": staged("a", 1)}, versions_a, ["t"], {}, files_a)
    versions_b, files_b = begin()
    assert files_b == [str(layout.partition_dir("ds", "t") / tables_a["t"]["file"])]
    tables_b = publish(layout, "ds", "extract-ds", "b" * 32, {"t": staged("b", 2)}, versions_b, ["t"], {}, files_b)
    folder = Path(str(layout.partition_dir("ds", "t")))
    assert sorted(p.name for p in folder.glob("*.parquet")) == [tables_b["t"]["file"]]  # b's commit removed a's
    _remove_replaced(layout, "ds", tables_a, versions_a, files_a)  # a's cleanup, late
    assert pq.read_table(folder / tables_b["t"]["file"]).num_rows == 2
