"""Export a month of PADAM stats as Hive-style partitioned CSV files.

Layout (specs/padam.md §5, no zero padding anywhere):
  year={y}/entity_stats_yearly_{y}.csv                      year to date, through the exported month
  year={y}/month={m}/entity_stats_monthly_{y}_{m}.csv
  year={y}/month={m}/day={d}/entity_stats_daily_{y}_{m}_{d}.csv

Each file is a header and one row. The files, their columns and their rows are those of the
models tagged `export` and `padam` in dbt's manifest (their contracts and meta.export in
transform/models/padam/_models.yml), written by the shared exporter
(northwind_elt/protocol/outputs.py). The warehouse renders every value as text in one
snapshot: integers as integers (the models cast the double source column), the mean as
Postgres's shortest round-trip text of a double (extra_float_digits = 1), which equals
Python's repr(sum / count) except that a whole mean prints without ".0".

Files that no longer match production later (rows deleted or changed there) get a `_STALE`
marker beside them (staleness.py); the month's next export removes it.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from pathlib import Path

import psycopg

from northwind_elt.core.day import configured_lake
from northwind_elt.core.files import write_whole
from northwind_elt.protocol.outputs import exported_models, publish_manifest, read_manifest, render, write


def publish_prepared_manifest() -> None:
    """dbt's manifest of the last prepare, in the lake: the export may run on another machine."""
    from northwind_elt.pipelines.padam.pipeline import PADAM

    lake = configured_lake()
    publish_manifest(PADAM.dbt_target_path, lake, lake.root / "padam" / "dbt-manifest.json")


@dataclass(frozen=True)
class ExportedMonth:
    year: int
    month: int
    files: list[Path]


def write_file(path: Path, header: tuple[str, ...], row: tuple[str, ...]) -> None:
    """Header and one row, written under a temporary name in the same folder, then renamed."""
    write_whole(path, (",".join(header) + "\n" + ",".join(row) + "\n").encode("ascii"))


def export_month(conn: psycopg.Connection, root: Path, year: int, month: int) -> ExportedMonth:
    """Write the month's daily files, its monthly file and then the year-to-date file.

    The caller has reconciled the month in the same (repeatable read) transaction. A month
    whose stats are incomplete raises ValueError before any file is written.
    """
    from northwind_elt.pipelines.padam.pipeline import PADAM

    lake = configured_lake()
    manifest = read_manifest(PADAM.dbt_target_path, lake, lake.root / "padam" / "dbt-manifest.json")
    models = exported_models(manifest, PADAM.dbt_tag)
    rendered = render(conn, models, root, {"year": year, "month": month})
    # A file per day (one_file_per the day of the month) for every day; one row in each other file.
    days_in_month = calendar.monthrange(year, month)[1]
    found = sorted(int(value) for file in rendered.files if file.spec.one_file_per for value in file.group.values())
    whole = [file for file in rendered.files if not file.spec.one_file_per]
    if any(file.rows != 1 for file in whole) or found != list(range(1, days_in_month + 1)):
        missing = sorted(set(range(1, days_in_month + 1)) - set(found))
        raise ValueError(
            f"the marts have no complete stats for {year}-{month}"
            + (f" (days without rows: {', '.join(map(str, missing))})" if missing else "")
        )
    # Models in their write order: the year-to-date file last, it says the month is exported.
    write(rendered)
    return ExportedMonth(year, month, [file.path for file in rendered.files])
