"""Exported PADAM files that no longer describe production: found, marked `_STALE`, unmarked.

An export writes a month's files from published stats that reconciled with production at that
moment; production can change afterwards (a month regenerated, rows deleted), and the files then
describe rows production no longer has. `find_stale` compares every exported file with
production's stats now, computed from its rows as the models compute them (count, sum, min and
max of `value::bigint` per calendar day; the mean is the sum over the count as a double, which
the file holds as the shortest text of that double). `mark` writes a `_STALE` file beside the
files that differ, naming what differs and the command that refreshes them, and removes it
wherever the files match production again (an export of the month removes its own).

Where the markers go (the layout of outputs.py):
  year={y}/month={m}/_STALE    the month's file and its daily files (day={d}/...)
  year={y}/_STALE              the year-to-date file entity_stats_yearly_{y}.csv: stale when it
                               is the year to date through no month of production's year now

The leading underscore is Hadoop's `_SUCCESS` convention: Hive-style readers (Spark, pyarrow
datasets) skip the marker instead of failing to read it as a CSV file of the partition.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import psycopg

from northwind_elt.core.files import write_whole
from northwind_elt.core.text import number, plural
from northwind_elt.pipelines.padam.generator import MAX_YEAR

MARKER = "_STALE"
PRODUCTION_TABLE = "public.entity"
_PART = re.compile(r"(year|month|day)=(\d+)")

DAILY_STATS = f"""
SELECT created_at::date, count(*), sum(value::bigint), min(value::bigint), max(value::bigint)
FROM {PRODUCTION_TABLE} WHERE created_at >= %s AND created_at < %s GROUP BY 1
"""


@dataclass(frozen=True)
class Stats:
    """count, sum, min and max of a group's values (whole numbers), as production has them."""

    count: int
    sum: int
    min: int
    max: int

    def merge(self, other: Stats) -> Stats:
        return Stats(self.count + other.count, self.sum + other.sum, min(self.min, other.min), max(self.max, other.max))

    @property
    def mean(self) -> float:
        return float(self.sum) / float(self.count)  # float8 / float8, as the models divide

    def differences(self, row: dict[str, str]) -> list[str]:
        """`name file-value (production value)` for each stats column of a file's row that differs."""
        wanted = {"sum_values": self.sum, "min_values": self.min, "max_values": self.max}
        found = []
        for name, value in wanted.items():
            if _whole(row.get(name)) != value:
                found.append(f"{name} {row.get(name)} (production {value})")
        if _number(row.get("mean_values")) != self.mean:
            found.append(f"mean_values {row.get('mean_values')} (production {self.mean!r})")
        return found

    def describe(self) -> str:
        return f"{plural(self.count, 'row')}, sum {number(self.sum)}, min {number(self.min)}, max {number(self.max)}"


def _whole(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def _merged(stats: Iterable[Stats]) -> Stats | None:
    total = None
    for one in stats:
        total = one if total is None else total.merge(one)
    return total


@dataclass(frozen=True)
class StaleFiles:
    """Exported files of a month (or a year's year-to-date file) that differ from production now."""

    folder: Path  # where the marker goes: the month's folder, or the year's for the yearly file
    year: int
    month: int | None  # None: the year-to-date file
    reasons: tuple[str, ...]
    export_month: int  # the month whose export writes them again (the yearly file: the newest exported)
    gone: bool = False  # production has no rows for the month any more

    @property
    def marker(self) -> Path:
        return self.folder / MARKER

    @property
    def what(self) -> str:
        if self.month is None:
            return f"{self.year} year to date"
        return f"{self.year}-{self.month:02d}"

    @property
    def refresh(self) -> str:
        command = f"nw padam prepare && nw padam export {self.year} {self.export_month}"
        if self.gone:
            return f"nw padam insert-month {self.year} {self.month} && {command}, or delete {self.folder}"
        return command

    def summary(self) -> str:
        return f"{self.what}: {'; '.join(self.reasons)}"

    def marker_text(self) -> str:
        reasons = "".join(f"  {reason}\n" for reason in self.reasons)
        if self.month is None:
            return (
                f"STALE: entity_stats_yearly_{self.year}.csv (the year to date) in this folder no longer matches "
                f"production:\n{reasons}Refresh it: {self.refresh}\n"
                "This marker is removed once it matches production again (an export writes it anew).\n"
            )
        return (
            f"STALE: the files of {self.what} in this folder and its day=* folders no longer match production:\n"
            f"{reasons}Refresh them: {self.refresh}\n"
            "This marker is removed once they match production again (the export writes them anew).\n"
        )


def month_folder(root: Path, year: int, month: int) -> Path:
    return root / f"year={year}" / f"month={month}"


def monthly_file(root: Path, year: int, month: int) -> Path:
    return month_folder(root, year, month) / f"entity_stats_monthly_{year}_{month}.csv"


def daily_file(root: Path, day: dt.date) -> Path:
    name = f"entity_stats_daily_{day.year}_{day.month}_{day.day}.csv"
    return month_folder(root, day.year, day.month) / f"day={day.day}" / name


def yearly_file(root: Path, year: int) -> Path:
    return root / f"year={year}" / f"entity_stats_yearly_{year}.csv"


def _numbered(folder: Path, part: str) -> dict[int, Path]:
    """The `part=N` subfolders of a folder, by N."""
    if not folder.is_dir():
        return {}
    found = {}
    for child in folder.iterdir():
        match = _PART.fullmatch(child.name)
        if match and match[1] == part and child.is_dir():
            found[int(match[2])] = child
    return found


def exported_months(root: Path) -> dict[int, list[int]]:
    """year -> its months that have a folder under the export root (exported at least once); a
    folder no export writes (year=0, month=13) is not the export's to check."""
    return {
        year: sorted(month for month in _numbered(folder, "month") if 1 <= month <= 12)
        for year, folder in sorted(_numbered(root, "year").items())
        if 1 <= year <= MAX_YEAR
    }


def production_daily(conn: psycopg.Connection, years: Iterable[int]) -> dict[dt.date, Stats]:
    """Production's stats per calendar day of the given years."""
    years = sorted(set(years))
    if not years or conn.execute("SELECT to_regclass(%s) IS NULL", [PRODUCTION_TABLE]).fetchone()[0]:
        return {}
    start, end = dt.datetime(years[0], 1, 1), dt.datetime(years[-1] + 1, 1, 1)
    rows = conn.execute(DAILY_STATS, (start, end)).fetchall()
    return {day: Stats(int(c), int(s), int(lo), int(hi)) for day, c, s, lo, hi in rows if day.year in years}


def _read_row(path: Path) -> dict[str, str] | None:
    """A stats file's one row by column name, or None when it is missing or not a header and a row."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError):
        return None
    if len(rows) != 2 or len(rows[0]) != len(rows[1]):
        return None
    return dict(zip(rows[0], rows[1], strict=True))


def _file_reasons(path: Path, stats: Stats) -> list[str]:
    """Why one stats file does not describe production's stats (none: it does)."""
    row = _read_row(path)
    if row is None:
        return [f"{path.name}: missing or unreadable (production {stats.describe()})"]
    differences = stats.differences(row)
    return [f"{path.name}: {', '.join(differences)}"] if differences else []


def _month_reasons(root: Path, year: int, month: int, daily: dict[dt.date, Stats]) -> list[str]:
    days = {day.day: stats for day, stats in sorted(daily.items()) if (day.year, day.month) == (year, month)}
    month_stats = _merged(days.values())
    if month_stats is None:
        return [f"production has no rows for {year}-{month:02d} now"]
    reasons = _file_reasons(monthly_file(root, year, month), month_stats)
    on_disk = set(_numbered(month_folder(root, year, month), "day"))
    differing = []
    for day in sorted(on_disk | set(days)):
        if day not in days:
            differing.append(f"{day} (production has no rows that day now)")
        elif day not in on_disk:
            differing.append(f"{day} (no file)")
        elif _file_reasons(daily_file(root, dt.date(year, month, day)), days[day]):
            differing.append(str(day))
    if differing:
        reasons.append(f"daily files that differ: day {', '.join(differing)}")
    return reasons


def _yearly_reasons(root: Path, year: int, daily: dict[dt.date, Stats], newest: int) -> list[str]:
    """The yearly file holds the year to date through the month last exported: it must be that
    of some month of production's year now. The reason compares it with the year to date through
    `newest`, the newest month exported."""
    path = yearly_file(root, year)
    if not path.exists():
        return []
    row = _read_row(path)
    if row is None:
        return [f"{path.name}: unreadable"]
    for month in range(1, 13):
        stats = _merged(stats for day, stats in sorted(daily.items()) if day.year == year and day.month <= month)
        if stats is not None and not stats.differences(row):
            return []
    stats = _merged(stats for day, stats in sorted(daily.items()) if day.year == year and day.month <= newest)
    if stats is None:
        return [f"{path.name}: production has no rows for {year} through {year}-{newest:02d} now"]
    return [
        f"{path.name}: the year to date through no month of production's {year} now; through "
        f"{year}-{newest:02d}: {', '.join(stats.differences(row))}"
    ]


def find_stale(root: Path, daily: dict[dt.date, Stats], years: Iterable[int] | None = None) -> list[StaleFiles]:
    """Every exported month (and year-to-date file) under the export root that differs from
    production's daily stats `daily`, which must cover the years checked (default: every year)."""
    found = []
    for year, months in exported_months(root).items():
        if years is not None and year not in years:
            continue
        for month in months:
            reasons = _month_reasons(root, year, month, daily)
            if reasons:
                gone = not any((day.year, day.month) == (year, month) for day in daily)
                found.append(StaleFiles(month_folder(root, year, month), year, month, tuple(reasons), month, gone))
        newest = months[-1] if months else 12
        yearly = _yearly_reasons(root, year, daily, newest)
        if yearly:
            found.append(StaleFiles(root / f"year={year}", year, None, tuple(yearly), newest))
    return found


def mark(root: Path, stale: list[StaleFiles], years: Iterable[int] | None = None) -> list[str]:
    """Write each stale folder's marker (only when its text changed) and remove the markers of
    folders no longer stale, in the years checked; return what failed, as warnings."""
    wanted = {entry.marker: entry.marker_text() for entry in stale}
    problems = []
    for path, text in wanted.items():
        try:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                write_whole(path, text.encode())
        except OSError as err:
            problems.append(f"cannot write {path}: {err.strerror or err}")
    for year, months in exported_months(root).items():
        if years is not None and year not in years:
            continue
        for folder in [root / f"year={year}", *(month_folder(root, year, month) for month in months)]:
            marker = folder / MARKER
            if marker not in wanted and marker.exists():
                try:
                    marker.unlink()
                except OSError as err:
                    problems.append(f"cannot remove {marker}: {err.strerror or err}")
    return problems


def by_month(stale: list[StaleFiles]) -> dict[tuple[int, int], list[StaleFiles]]:
    """The findings by the month whose export refreshes them."""
    grouped: dict[tuple[int, int], list[StaleFiles]] = defaultdict(list)
    for entry in stale:
        grouped[(entry.year, entry.export_month)].append(entry)
    return dict(grouped)
