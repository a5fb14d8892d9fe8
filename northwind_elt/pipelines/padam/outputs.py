"""Export a month of PADAM stats as Hive-style partitioned CSV files.

Layout (specs/padam.md §5, no zero padding anywhere):
  year={y}/entity_stats_yearly_{y}.csv                      year to date, through the exported month
  year={y}/month={m}/entity_stats_monthly_{y}_{m}.csv
  year={y}/month={m}/day={d}/entity_stats_daily_{y}_{m}_{d}.csv

Each file is a header and one row. The warehouse renders every value as text in one
snapshot: integers as integers (the models cast the double source column), the mean as
Postgres's shortest round-trip text of a double (extra_float_digits = 1), which equals
Python's repr(sum / count) except that a whole mean prints without ".0".
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from pathlib import Path

import psycopg

from northwind_elt.core.files import atomic_write_bytes
from northwind_elt.pipelines.padam.warehouse import MART_SCHEMA

STATS = ("sum_values", "min_values", "max_values", "mean_values")
_TEXT = ", ".join(f"{column}::text" for column in STATS)


@dataclass(frozen=True)
class ExportedMonth:
    year: int
    month: int
    files: list[Path]


def write_file(path: Path, header: tuple[str, ...], row: tuple[str, ...]) -> None:
    """Header and one row, written under a temporary name in the same folder, then renamed."""
    atomic_write_bytes(path, (",".join(header) + "\n" + ",".join(row) + "\n").encode("ascii"))


def month_rows(conn: psycopg.Connection, year: int, month: int) -> tuple[tuple, tuple, list[tuple]]:
    """(yearly-to-date row, monthly row, daily rows) as text, read in one snapshot."""
    conn.execute("SET extra_float_digits = 1")
    ytd = conn.execute(
        f"SELECT year::text, {_TEXT} FROM {MART_SCHEMA}.entity_stats_year_to_date WHERE year = %s AND month = %s",
        (year, month),
    ).fetchone()
    monthly = conn.execute(
        f"SELECT year::text, month::text, {_TEXT} FROM {MART_SCHEMA}.entity_stats_monthly "
        f"WHERE year = %s AND month = %s",
        (year, month),
    ).fetchone()
    daily = conn.execute(
        f"SELECT year::text, month::text, day_of_month::text, {_TEXT} FROM {MART_SCHEMA}.entity_stats_daily "
        f"WHERE year = %s AND month = %s ORDER BY day",  # the date: the output columns are text
        (year, month),
    ).fetchall()
    return ytd, monthly, daily


def export_month(conn: psycopg.Connection, root: Path, year: int, month: int) -> ExportedMonth:
    """Write the month's file, its daily files and the year-to-date file.

    The caller has reconciled the month in the same (repeatable read) transaction.
    """
    ytd, monthly, daily = month_rows(conn, year, month)
    days_in_month = calendar.monthrange(year, month)[1]
    found = [int(row[2]) for row in daily]
    if ytd is None or monthly is None or found != list(range(1, days_in_month + 1)):
        missing = sorted(set(range(1, days_in_month + 1)) - set(found))
        raise ValueError(
            f"the marts have no complete stats for {year}-{month}"
            + (f" (days without rows: {', '.join(map(str, missing))})" if missing else "")
        )
    year_dir = root / f"year={year}"
    month_dir = year_dir / f"month={month}"
    files = []
    for day_row in daily:
        day = day_row[2]
        path = month_dir / f"day={day}" / f"entity_stats_daily_{year}_{month}_{day}.csv"
        write_file(path, ("year", "month", "day", *STATS), day_row)
        files.append(path)
    path = month_dir / f"entity_stats_monthly_{year}_{month}.csv"
    write_file(path, ("year", "month", *STATS), monthly)
    files.append(path)
    # Written last: the yearly file says the month is exported.
    path = year_dir / f"entity_stats_yearly_{year}.csv"
    write_file(path, ("year", *STATS), ytd)
    files.append(path)
    return ExportedMonth(year, month, files)
