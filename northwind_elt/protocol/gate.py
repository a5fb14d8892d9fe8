"""The load gate: a day may be loaded only when every extract step published it, intact."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from northwind_elt.core import text
from northwind_elt.core.day import DayLayout
from northwind_elt.core.errors import PipelineError
from northwind_elt.core.manifests import IncompletePartition, read_step, verify_file, verify_partition
from northwind_elt.protocol.definition import Pipeline, Step


@dataclass(frozen=True)
class Partition:
    step: str
    table: str
    file: PurePosixPath  # in the lake
    manifest: dict  # rows and sha256


def _tables(names: set[str] | list[str]) -> str:
    """'1 table ['orders']', '2 tables ['a', 'b']'."""
    return f"{text.plural(len(names), 'table')} {sorted(names)}"


def _refuse(layout: DayLayout, load_step: str, cause: str, extract: Step) -> PipelineError:
    # One instruction: rerun from the extract at fault, which runs load and the rest after it.
    return PipelineError(
        load_step,
        layout.day,
        f"{load_step} refused for {layout.iso}: {cause}",
        rerun_from=extract.name,
    )


def verified_partitions(pipeline: Pipeline, layout: DayLayout, load_step: str = "load") -> list[Partition]:
    """Every partition of the day, each checked against its manifest, or PipelineError."""
    extracts = pipeline.extract_steps
    missing = [step for step in extracts if read_step(layout, step.name) is None]
    if missing:
        names = " and ".join(step.name for step in missing)
        folder = layout.store.where(layout.step_manifest(missing[0].name).parent)
        raise _refuse(
            layout, load_step, f"{names} did not complete for that day (no manifest under {folder})", missing[0]
        )
    partitions: list[Partition] = []
    lake = layout.store
    for step in extracts:
        manifest = read_step(layout, step.name)
        assert manifest is not None and step.dataset is not None
        listed = set(manifest.get("tables") or {})
        expected = set(manifest.get("expected_tables") or []) | set(step.expected_tables)
        if not listed:
            raise _refuse(layout, load_step, f"the {step.name} manifest lists no tables", step)
        if expected - listed:
            raise _refuse(
                layout,
                load_step,
                f"the {step.name} manifest lacks {_tables(expected - listed)} that the step must produce",
                step,
            )
        on_disk = layout.partitions_on_disk(step.dataset)
        unlisted = sorted(set(on_disk) - listed)
        step_where = lake.where(layout.step_manifest(step.name))
        if unlisted:
            raise _refuse(
                layout,
                load_step,
                f"{_tables(unlisted)} in the lake {'has a partition' if len(unlisted) == 1 else 'have partitions'} "
                f"not listed in {step_where} (the manifest was edited, or an older run left "
                f"{'it' if len(unlisted) == 1 else 'them'})",
                step,
            )
        for table in sorted(listed):
            entry = manifest["tables"][table]
            manifest_path = layout.partition_manifest(step.dataset, table)
            try:
                if "file" in entry:  # the step manifest names the file it committed
                    data_file = manifest_path.parent / entry["file"]
                    verify_file(lake, data_file, entry["rows"], entry["sha256"], step_where)
                    partition = {"rows": entry["rows"], "sha256": entry["sha256"]}
                else:  # a day committed before files were named per attempt: its partition manifest does
                    partition = verify_partition(lake, manifest_path)
                    data_file = manifest_path.parent / partition["file"]
                    verify_file(lake, data_file, partition["rows"], partition["sha256"], step_where)
            except IncompletePartition as err:
                raise _refuse(layout, load_step, f"{step.name} output is not intact: {err}", step) from None
            if partition["sha256"] != entry.get("sha256"):
                raise _refuse(
                    layout,
                    load_step,
                    f"{lake.where(manifest_path)} does not match what {step.name} published "
                    f"(sha256 differs from {step_where})",
                    step,
                )
            partitions.append(Partition(step.name, table, data_file, partition))
    tables = [p.table for p in partitions]
    duplicated = sorted({t for t in tables if tables.count(t) > 1})
    if duplicated:
        raise PipelineError(
            load_step,
            layout.day,
            f"{_tables(duplicated)} {'comes' if len(duplicated) == 1 else 'come'} from more than one extract step",
        )
    return partitions
