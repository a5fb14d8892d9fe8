"""The load gate: a day may be loaded only when both step-1 jobs completed for it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from northwind_elt.day import EXTRACT_STEPS, DayLayout, rerun_command
from northwind_elt.files import IncompletePartition, read_json, verify_partition


class GateRefused(RuntimeError):
    pass


@dataclass(frozen=True)
class Partition:
    step: str
    table: str
    file: Path
    rows: int


def verified_partitions(layout: DayLayout) -> list[Partition]:
    """Every partition of the day, each checked against its manifest, or GateRefused."""
    missing = [step for step in EXTRACT_STEPS if not layout.step_manifest(step).exists()]
    if missing:
        steps = " and ".join(missing)
        fixes = "; ".join(rerun_command(step, layout.day) for step in missing)
        raise GateRefused(
            f"load refused for {layout.iso}: {steps} did not complete for that day "
            f"(no manifest under {layout.step_manifest(missing[0]).parent}). Run first: {fixes}"
        )
    partitions = []
    for step, dataset in EXTRACT_STEPS.items():
        for table in sorted(read_json(layout.step_manifest(step))["tables"]):
            manifest_path = layout.partition_manifest(dataset, table)
            try:
                manifest = verify_partition(manifest_path)
            except IncompletePartition as err:
                raise GateRefused(
                    f"load refused for {layout.iso}: {step} output is not intact: {err}. "
                    f"Re-extract it: {rerun_command(step, layout.day)}"
                ) from None
            partitions.append(Partition(step, table, layout.partition_file(dataset, table), manifest["rows"]))
    tables = [p.table for p in partitions]
    duplicated = {t for t in tables if tables.count(t) > 1}
    if duplicated:
        raise GateRefused(f"load refused for {layout.iso}: table(s) {sorted(duplicated)} come from both extract steps")
    return partitions
