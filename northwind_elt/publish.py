"""Commit steps: make a finished step's output visible, all or nothing per partition.

Each runs as the task after its EL block in the Meltano job, so it only runs when the
tap and the target both exited 0.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

from northwind_elt import ledger
from northwind_elt.day import EXTRACT_STEPS, DayLayout, rerun_command
from northwind_elt.files import atomic_write_json, describe_parquet, read_json
from northwind_elt.locks import step_lock


class PublishError(RuntimeError):
    pass


def publish_extract(layout: DayLayout, step: str) -> int:
    """Move the staged files of `step` into their partitions; manifests are written last."""
    dataset = EXTRACT_STEPS[step]
    staging = layout.staging_dir(step)
    marker = layout.staged_marker(step)
    if not marker.exists():
        raise PublishError(
            f"{step} for {layout.iso}: nothing complete to publish ({marker} is missing, so "
            f"target-parquet did not finish). Rerun: {rerun_command(step, layout.day)}"
        )
    with step_lock(layout, step, wait=True):  # waits for a target of the same step and day
        return _publish_locked(layout, step, dataset, staging, marker)


def _publish_locked(layout: DayLayout, step: str, dataset: str, staging: Path, marker: Path) -> int:
    if not marker.exists():
        raise PublishError(f"{step} for {layout.iso}: another run published or cleared {marker.parent} first")
    staged = read_json(marker)
    if staged["day"] != layout.iso:
        raise PublishError(f"{marker} is for {staged['day']}, not {layout.iso}")
    # From here until the new step manifest is written, the step counts as not done.
    layout.step_manifest(step).unlink(missing_ok=True)
    tables = {}
    for table, rows in sorted(staged["tables"].items()):
        source = staging / f"{table}.parquet"
        described = describe_parquet(source)
        if described["rows"] != rows:
            raise PublishError(f"{source} has {described['rows']} rows, target-parquet reported {rows}")
        manifest_path = layout.partition_manifest(dataset, table)
        manifest_path.unlink(missing_ok=True)
        destination = layout.partition_file(dataset, table)
        destination.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, destination)  # atomic: same filesystem
        atomic_write_json(
            manifest_path,
            {**described, "table": table, "day": layout.iso, "step": step, "dataset": dataset},
        )
        tables[table] = {"rows": described["rows"], "sha256": described["sha256"]}
    atomic_write_json(
        layout.step_manifest(step),
        {"day": layout.iso, "step": step, "tables": tables, "published_at": ledger.now().isoformat()},
    )
    shutil.rmtree(staging, ignore_errors=True)
    total = sum(t["rows"] for t in tables.values())
    ledger.record(layout.day, step, "success", started_at=dt.datetime.fromisoformat(staged["started_at"]), rows=total)
    return total
