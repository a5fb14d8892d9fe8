"""Publishing an extract's day into the lake, so that two attempts can never both commit it.

1. `versions_at_begin` (begin task): the version of the step manifest and of every partition
   manifest of the day, as the attempt found them.
2. `publish` (commit task): each staged file goes to the lake under a name unique to the
   attempt (`{table}.{attempt}.parquet`, written once); each partition manifest is created or
   swapped against the version read at begin; the step manifest last, the same way. Readers
   (the load's gate) go through the step manifest only, so until it is replaced they read the
   previous commit, whole; old files are removed after the new step manifest is visible.
3. A writer that finds a manifest changed since it began (another attempt committed first)
   gets CommitConflict: it removes the files it wrote that no manifest names, and stops.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from northwind_elt.core.day import DayLayout
from northwind_elt.core.lake import CommitConflict
from northwind_elt.core.manifests import describe_parquet, read_lake_json, write_partition, write_step


def versions_at_begin(layout: DayLayout, dataset: str, step: str) -> dict[str, str | None]:
    lake = layout.store
    versions = {str(layout.step_manifest(step)): lake.version(layout.step_manifest(step))}
    for path in layout.partitions_on_disk(dataset).values():
        versions[str(path)] = lake.version(path)
    return versions


def files_at_begin(layout: DayLayout, dataset: str, step: str) -> list[str]:
    """The data files the day's manifests name when the attempt begins: what its commit replaces,
    and the only files it removes (a file no manifest named then may be another attempt's)."""
    lake = layout.store
    named = set()
    for path in layout.partitions_on_disk(dataset).values():
        described = read_lake_json(lake, path) or {}
        if isinstance(described.get("file"), str):
            named.add(str(path.parent / described["file"]))
    committed = read_lake_json(lake, layout.step_manifest(step)) or {}
    for table, entry in (committed.get("tables") or {}).items():
        if isinstance(entry, dict) and isinstance(entry.get("file"), str):
            named.add(str(layout.partition_dir(dataset, table) / entry["file"]))
    return sorted(named)


@dataclass
class Conflict(Exception):
    """Another attempt committed the day's `what` first; this attempt published nothing."""

    what: str
    detail: str


def publish(
    layout: DayLayout,
    dataset: str,
    step: str,
    run_id: str,
    staged: dict[str, Path],
    versions: dict[str, str | None],
    expected: list[str],
    left_out: dict[str, Any],
    replaced: list[str] = (),
) -> dict[str, dict[str, Any]]:
    """Commit `staged` (table -> finished local file) as the day's output of `step`."""
    lake = layout.store
    tables: dict[str, dict[str, Any]] = {}
    written: dict[str, PurePosixPath] = {}
    committed: set[str] = set()
    current = None
    try:
        for table, source in sorted(staged.items()):
            current = f"table {table}"
            described = describe_parquet(source)
            target = layout.partition_file(dataset, table, run_id)
            lake.put_file(source, target, described["sha256"])
            written[table] = target
            described["file"] = target.name
            manifest = layout.partition_manifest(dataset, table)
            write_partition(layout, dataset, table, step, described, versions.get(str(manifest)))
            committed.add(table)
            tables[table] = {k: described[k] for k in ("file", "rows", "sha256", "bytes")}
        current = "the step manifest"
        step_path = layout.step_manifest(step)
        write_step(layout, step, dataset, run_id, tables, expected, version=versions.get(str(step_path)), **left_out)
    except CommitConflict as err:
        # Files no manifest names are this attempt's alone; a partition it did commit stays
        # (its manifest names it) until the next successful commit of the day removes it.
        for table, path in written.items():
            if table not in committed:
                lake.delete(path)
        raise Conflict(current or "the day", str(err)) from None
    _remove_replaced(layout, dataset, tables, versions, replaced)
    return tables


def _remove_replaced(
    layout: DayLayout, dataset: str, tables: dict[str, dict[str, Any]], versions: dict[str, str | None], replaced
) -> None:
    """After the new step manifest is visible: the files the day's manifests named when this attempt
    began that it does not name, and the partitions of tables it no longer lists (unless another
    writer changed them since). Nothing found by listing: a file no manifest named at begin may be
    a later attempt's."""
    lake = layout.store
    named = {str(layout.partition_dir(dataset, table) / entry["file"]) for table, entry in tables.items()}
    for path in replaced:
        if path not in named:
            lake.delete(PurePosixPath(path))
    for table, manifest_path in layout.partitions_on_disk(dataset).items():
        if table not in tables and lake.version(manifest_path) == versions.get(str(manifest_path)):
            lake.delete(manifest_path)
