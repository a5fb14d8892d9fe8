"""begin/commit of an extract step and the load gate, on real files in a temporary directory."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path, PurePath

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from northwind_elt.core import ledger
from northwind_elt.core.day import DayLayout, path_component
from northwind_elt.core.errors import PipelineError
from northwind_elt.protocol import steps as protocol
from northwind_elt.protocol.definition import EXTRACT, LOAD, Pipeline, Step
from northwind_elt.protocol.gate import verified_partitions

DAY = dt.date(2024, 1, 15)
FILES = Pipeline(
    name="files",
    description="two file extracts and a load, for the unit tests",
    dag_id="files_daily",
    steps=(
        Step("extract-a", EXTRACT, dataset="a", expected_tables=("one", "two")),
        Step("extract-b", EXTRACT, dataset="csv", expected_tables=("lines",)),
        Step("load", LOAD, needs=("extract-a", "extract-b")),
    ),
)


def local(path: PurePath) -> Path:
    """A path in the lake, which is the data directory here."""
    return Path(str(path))


def published_file(layout: DayLayout, step: str, dataset: str, table: str) -> Path:
    """The file the step manifest names for `table` (its name is the attempt's)."""
    entry = json.loads(local(layout.step_manifest(step)).read_text())["tables"][table]
    return local(layout.partition_dir(dataset, table)) / entry["file"]


def stage(data_dir: Path, step: str, tables: dict[str, int]) -> None:
    """What target-parquet-files leaves in a step's staging area: one finished file per table."""
    staging = DayLayout(DAY, data_dir).staging_dir(step)
    for name, rows in tables.items():
        pq.write_table(pa.table({"id": pa.array(range(rows), pa.int64())}), staging / f"{path_component(name)}.parquet")


def extract(data_dir: Path, step: str, tables: dict[str, int]) -> str:
    protocol.begin(FILES, step)
    stage(data_dir, step, tables)
    return protocol.commit(FILES, step)


def test_commit_publishes_every_table_then_the_step_manifest_and_records_success(data_dir: Path) -> None:
    assert "3 rows" in extract(data_dir, "extract-a", {"one": 1, "two": 2})
    layout = DayLayout(DAY, data_dir)
    manifest = json.loads(local(layout.step_manifest("extract-a")).read_text())
    assert {t: v["rows"] for t, v in manifest["tables"].items()} == {"one": 1, "two": 2}
    assert pq.read_table(published_file(layout, "extract-a", "a", "two")).num_rows == 2
    assert not layout.staging_dir("extract-a").exists()
    assert ledger.latest("files", DAY)["extract-a"]["status"] == "success"


def test_commit_refuses_a_step_with_no_tables_and_publishes_nothing(data_dir: Path) -> None:
    with pytest.raises(PipelineError) as raised:
        extract(data_dir, "extract-a", {})
    assert "wrote 0 tables" in str(raised.value)
    assert "nw run --date 2024-01-15 --from extract-a" in str(raised.value)
    assert not local(DayLayout(DAY, data_dir).step_manifest("extract-a")).exists()


def test_commit_refuses_fewer_tables_than_expected_naming_the_missing_ones(data_dir: Path) -> None:
    with pytest.raises(PipelineError, match=r"missing: \['two'\]"):
        extract(data_dir, "extract-a", {"one": 1})
    assert not local(DayLayout(DAY, data_dir).step_manifest("extract-a")).exists()


def test_a_hostile_table_name_stays_inside_its_folder(data_dir: Path) -> None:
    extract(data_dir, "extract-a", {"one": 1, "two": 1, "../../fc_escape": 3, "Order Items": 2})
    files = {p.relative_to(data_dir) for p in data_dir.rglob("*") if p.is_file()}
    assert all(str(p).startswith(("a/", "_manifests/", "ledger", ".locks/")) for p in files), files
    assert DayLayout(DAY, data_dir).partitions_on_disk("a").keys() == {"one", "two", "../../fc_escape", "Order Items"}
    assert not (data_dir.parent / "fc_escape.parquet").exists()


def test_a_rerun_removes_partitions_of_tables_that_are_gone(data_dir: Path) -> None:
    extract(data_dir, "extract-a", {"one": 1, "two": 1, "three": 1})
    extract(data_dir, "extract-a", {"one": 1, "two": 1})
    assert set(DayLayout(DAY, data_dir).partitions_on_disk("a")) == {"one", "two"}


def test_begin_cleans_what_a_failed_attempt_left(data_dir: Path) -> None:
    protocol.begin(FILES, "extract-a")
    staging = DayLayout(DAY, data_dir).staging_dir("extract-a")
    (staging / "batches").mkdir()
    (staging / "batches" / "tap-1.parquet").write_bytes(b"half")
    (staging / ".one.parquet.123.tmp").write_bytes(b"half")
    protocol.begin(FILES, "extract-a")
    assert sorted(p.name for p in staging.rglob("*")) == ["_begin.json"]


def test_commit_without_its_begin_refuses(data_dir: Path) -> None:
    with pytest.raises(PipelineError, match="no begin record of this run"):
        protocol.commit(FILES, "extract-a")


@pytest.fixture
def extracted(data_dir: Path) -> DayLayout:
    extract(data_dir, "extract-a", {"one": 1, "two": 2})
    extract(data_dir, "extract-b", {"lines": 5})
    return DayLayout(DAY, data_dir)


def test_the_gate_passes_an_intact_day(extracted: DayLayout) -> None:
    partitions = verified_partitions(FILES, extracted)
    assert {(p.table, p.manifest["rows"]) for p in partitions} == {("one", 1), ("two", 2), ("lines", 5)}


def test_the_gate_refuses_a_missing_step_with_one_instruction(data_dir: Path) -> None:
    extract(data_dir, "extract-a", {"one": 1, "two": 2})
    with pytest.raises(PipelineError) as raised:
        verified_partitions(FILES, DayLayout(DAY, data_dir))
    message = str(raised.value)
    assert "load refused for 2024-01-15: extract-b did not complete" in message
    assert message.count("nw run") == 1 and message.endswith("Then rerun: nw run --date 2024-01-15 --from extract-b")


def test_the_gate_refuses_a_manifest_edited_to_drop_a_table(extracted: DayLayout, data_dir: Path) -> None:
    extract(data_dir, "extract-a", {"one": 1, "two": 2, "extra": 3})
    path = local(extracted.step_manifest("extract-a"))
    manifest = json.loads(path.read_text())
    del manifest["tables"]["extra"]
    path.write_text(json.dumps(manifest))
    with pytest.raises(PipelineError, match=r"1 table \['extra'\] in the lake has a partition not listed"):
        verified_partitions(FILES, extracted)


def test_the_gate_refuses_a_manifest_with_no_tables(extracted: DayLayout) -> None:
    path = local(extracted.step_manifest("extract-b"))
    path.write_text(json.dumps({**json.loads(path.read_text()), "tables": {}}))
    with pytest.raises(PipelineError, match="the extract-b manifest lists no tables"):
        verified_partitions(FILES, extracted)


def test_the_gate_refuses_fewer_tables_than_the_step_must_produce(extracted: DayLayout) -> None:
    path = local(extracted.step_manifest("extract-a"))
    manifest = json.loads(path.read_text())
    del manifest["tables"]["two"]
    path.write_text(json.dumps(manifest))
    with pytest.raises(PipelineError, match=r"lacks 1 table \['two'\]"):
        verified_partitions(FILES, extracted)


def test_the_gate_refuses_a_partition_that_is_not_the_published_one(extracted: DayLayout) -> None:
    # Replace a partition and its own manifest consistently: only the step manifest knows.
    file = published_file(extracted, "extract-a", "a", "one")
    pq.write_table(pa.table({"id": pa.array([7], pa.int64())}), file)
    from northwind_elt.core.manifests import describe_parquet, write_partition

    manifest = extracted.partition_manifest("a", "one")
    write_partition(extracted, "a", "one", "extract-a", describe_parquet(file), extracted.store.version(manifest))
    with pytest.raises(PipelineError, match=r"is not the file .*extract-a\.json describes"):
        verified_partitions(FILES, extracted)
