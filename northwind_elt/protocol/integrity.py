"""Nothing in the lake lost unnoticed: the latest committed day of every extract step, checked
against what its step manifest records (the file of each table, its size and sha256).

Cheap enough for every `nw status`: one listing-sized request per file on S3 (the sha256 every
data object carries as metadata is compared; the bytes are not downloaded), a read and a hash
per file on local disk, for one day per extract step.
"""

from __future__ import annotations

import datetime as dt

from northwind_elt.core import ledger, text
from northwind_elt.core.day import DayLayout
from northwind_elt.core.lake import LakeError
from northwind_elt.core.manifests import read_lake_json, read_step
from northwind_elt.protocol.definition import DAY, EXTRACT, Pipeline


def _latest_committed_day(pipeline: Pipeline, step: str) -> str | None:
    for unit, entries in ledger.latest_by_unit(pipeline.name, DAY, None, steps=[step]).items():
        entry = entries.get(step)
        if entry and entry["status"] == "success":
            return unit[:10]
    return None


def _rows(rows: int | None) -> str:
    return "? rows" if rows is None else text.plural(rows, "row")


def _check_file(layout: DayLayout, path, entry: dict) -> str | None:
    lake = layout.store
    found = lake.info(path)
    if found is None:
        return "is missing"
    if entry.get("bytes") is not None and int(found["size"]) != int(entry["bytes"]):
        return f"has {text.plural(int(found['size']), 'byte')}, {text.number(int(entry['bytes']))} were committed"
    # On S3 the sha256 each data object carries; an object without it (written by something
    # else since) is read and hashed.
    actual = (lake.recorded_sha256(path) if lake.remote else None) or lake.sha256(path)
    if actual != entry["sha256"]:
        return "is not the file that was committed (sha256 differs)"
    return None


def lost_partitions(pipelines: list[Pipeline]) -> list[str]:
    """One line per committed partition (or step manifest) the lake no longer holds intact."""
    lines = []
    for pipeline in pipelines:
        if pipeline.unit != DAY:
            continue
        for step in pipeline.steps:
            if step.kind != EXTRACT or step.dataset is None:
                continue
            day = _latest_committed_day(pipeline, step.name)
            if day is None:
                continue
            layout = DayLayout.for_day(dt.date.fromisoformat(day))
            lake = layout.store
            rerun = pipeline.rerun(step.name, day)
            try:
                manifest = read_step(layout, step.name)
                if manifest is None:
                    where = lake.where(layout.step_manifest(step.name))
                    lines.append(f"LOST: {where}, the commit of {pipeline.name} {step.name} for {day}; rerun: {rerun}")
                    continue
                for table, entry in sorted(manifest.get("tables", {}).items()):
                    if "file" not in entry:  # committed before files were named per attempt
                        described = read_lake_json(lake, layout.partition_manifest(step.dataset, table)) or {}
                        entry = {**described, **entry, "file": described.get("file", "?")}
                    path = layout.partition_dir(step.dataset, table) / entry["file"]
                    if problem := _check_file(layout, path, entry):
                        lines.append(
                            f"LOST: {lake.where(path)} ({pipeline.name} {step.name} for {day}, table {table}, "
                            f"{_rows(entry.get('rows'))}) {problem}; rerun: {rerun}"
                        )
            except (LakeError, OSError, ValueError) as err:
                lines.append(f"LOST?: cannot check {pipeline.name} {step.name} for {day} in the lake: {err}")
    return lines
