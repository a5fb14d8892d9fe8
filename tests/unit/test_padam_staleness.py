"""PADAM's exported files checked against production (no database): found stale, marked, unmarked.

Production's stats come from the generator's rows, aggregated here; the export tree is written as
the export writes it (a header and one row, the mean as the shortest text of the double).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from pathlib import Path

import pytest

from northwind_elt.pipelines.padam import commands, staleness
from northwind_elt.pipelines.padam.generator import month_rows
from northwind_elt.pipelines.padam.outputs import write_file
from northwind_elt.pipelines.padam.staleness import MARKER, Stats

YEAR = 2022
MONTHS = (1, 2, 3)


def production(rows: list[tuple[dt.datetime, int]]) -> dict[dt.date, Stats]:
    values: dict[dt.date, list[int]] = defaultdict(list)
    for created_at, value in rows:
        values[created_at.date()].append(value)
    return {day: Stats(len(v), sum(v), min(v), max(v)) for day, v in values.items()}


def rows_of(months: tuple[int, ...] = MONTHS) -> list[tuple[dt.datetime, int]]:
    return [row for month in months for row in month_rows(YEAR, month, 1)]


def total(stats: list[Stats]) -> Stats:
    return Stats(
        sum(s.count for s in stats), sum(s.sum for s in stats), min(s.min for s in stats), max(s.max for s in stats)
    )


def mean_text(stats: Stats) -> str:
    mean = stats.sum / stats.count
    return str(int(mean)) if mean.is_integer() else repr(mean)


def write_stats(path: Path, keys: dict[str, int], stats: Stats) -> None:
    header = (*keys, "sum_values", "min_values", "max_values", "mean_values")
    row = (*map(str, keys.values()), str(stats.sum), str(stats.min), str(stats.max), mean_text(stats))
    write_file(path, header, row)


def export(root: Path, daily: dict[dt.date, Stats], month: int) -> None:
    """The month's files and the year to date through it, as `nw padam export` writes them."""
    days = {day: s for day, s in daily.items() if day.month == month}
    for day, stats in days.items():
        write_stats(staleness.daily_file(root, day), {"year": YEAR, "month": month, "day": day.day}, stats)
    write_stats(staleness.monthly_file(root, YEAR, month), {"year": YEAR, "month": month}, total(list(days.values())))
    to_date = total([s for day, s in daily.items() if day.month <= month])
    write_stats(staleness.yearly_file(root, YEAR), {"year": YEAR}, to_date)


@pytest.fixture
def exported(tmp_path: Path) -> Path:
    root = tmp_path / "exports"
    daily = production(rows_of())
    for month in MONTHS:
        export(root, daily, month)
    return root


def markers(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob(MARKER))


def test_files_written_from_production_are_current_and_a_stray_marker_is_removed(exported: Path) -> None:
    daily = production(rows_of())
    assert staleness.find_stale(exported, daily) == []
    (exported / f"year={YEAR}" / "month=2" / MARKER).write_text("left over")
    assert staleness.mark(exported, []) == []
    assert markers(exported) == []


def test_rows_deleted_in_production_mark_the_month_and_the_year_to_date(exported: Path) -> None:
    rows = rows_of()
    deleted_day = dt.date(YEAR, 2, 10)
    afternoon = dt.datetime(YEAR, 2, 10, 12)
    kept = [(at, value) for at, value in rows if not (deleted_day == at.date() and at >= afternoon)]
    assert len(rows) - len(kept) >= 2
    daily = production(kept)
    before, after = production(rows), daily
    month_before = total([s for d, s in before.items() if d.month == 2])
    month_after = total([s for d, s in after.items() if d.month == 2])
    ytd_before, ytd_after = total(list(before.values())), total(list(after.values()))

    stale = staleness.find_stale(exported, daily)
    assert [(entry.year, entry.month, entry.export_month) for entry in stale] == [(YEAR, 2, 2), (YEAR, None, 3)]
    month, year = stale
    differing = [f"sum_values {month_before.sum} (production {month_after.sum})"]
    if month_before.min != month_after.min:
        differing.append(f"min_values {month_before.min} (production {month_after.min})")
    if month_before.max != month_after.max:
        differing.append(f"max_values {month_before.max} (production {month_after.max})")
    differing.append(f"mean_values {mean_text(month_before)} (production {month_after.sum / month_after.count!r})")
    assert month.reasons == (
        f"entity_stats_monthly_{YEAR}_2.csv: {', '.join(differing)}",
        f"daily files that differ: day {deleted_day.day}",
    )
    assert month.refresh == f"nw padam prepare && nw padam export {YEAR} 2"
    assert year.reasons == (
        f"entity_stats_yearly_{YEAR}.csv: the year to date through no month of production's {YEAR} now; "
        f"through {YEAR}-03: sum_values {ytd_before.sum} (production {ytd_after.sum}), "
        f"mean_values {mean_text(ytd_before)} (production {ytd_after.sum / ytd_after.count!r})",
    )
    assert year.refresh == f"nw padam prepare && nw padam export {YEAR} 3"

    assert staleness.mark(exported, stale) == []
    assert markers(exported) == [f"year={YEAR}/{MARKER}", f"year={YEAR}/month=2/{MARKER}"]
    text = (exported / f"year={YEAR}" / "month=2" / MARKER).read_text()
    assert text == (
        f"STALE: the files of {YEAR}-02 in this folder and its day=* folders no longer match production:\n"
        + "".join(f"  {reason}\n" for reason in month.reasons)
        + f"Refresh them: nw padam prepare && nw padam export {YEAR} 2\n"
        "This marker is removed once they match production again (the export writes them anew).\n"
    )
    assert (exported / f"year={YEAR}" / MARKER).read_text() == (
        f"STALE: entity_stats_yearly_{YEAR}.csv (the year to date) in this folder no longer matches production:\n"
        + "".join(f"  {reason}\n" for reason in year.reasons)
        + f"Refresh it: nw padam prepare && nw padam export {YEAR} 3\n"
        "This marker is removed once it matches production again (an export writes it anew).\n"
    )
    assert staleness.by_month(stale) == {(YEAR, 2): [month], (YEAR, 3): [year]}

    # The month exported again from production: both markers go (the yearly file is then through 2).
    export(exported, daily, 2)
    assert staleness.find_stale(exported, daily) == []
    staleness.mark(exported, [])
    assert markers(exported) == []


def test_a_marker_is_rewritten_only_when_its_text_changes(exported: Path) -> None:
    rows = [(at, value) for at, value in rows_of() if at.date() != dt.date(YEAR, 3, 31)]
    stale = staleness.find_stale(exported, production(rows))
    staleness.mark(exported, stale)
    marker = exported / f"year={YEAR}" / "month=3" / MARKER
    written = marker.stat().st_mtime_ns, marker.stat().st_ino
    staleness.mark(exported, staleness.find_stale(exported, production(rows)))
    assert (marker.stat().st_mtime_ns, marker.stat().st_ino) == written
    assert "daily files that differ: day 31 (production has no rows that day now)" in marker.read_text()


def test_a_month_production_no_longer_has_names_both_ways_out(exported: Path) -> None:
    stale = staleness.find_stale(exported, production(rows_of((1, 2))))
    month = next(entry for entry in stale if entry.month == 3)
    assert month.reasons == (f"production has no rows for {YEAR}-03 now",)
    assert month.refresh == (
        f"nw padam insert-month {YEAR} 3 && nw padam prepare && nw padam export {YEAR} 3, "
        f"or delete {exported / f'year={YEAR}' / 'month=3'}"
    )


def test_folders_no_export_writes_are_left_alone(exported: Path) -> None:
    for stray in ("year=0/month=1", f"year={YEAR}/month=13", "year=99999/month=1", "notes"):
        (exported / stray).mkdir(parents=True)
    assert staleness.exported_months(exported) == {YEAR: list(MONTHS)}
    assert staleness.find_stale(exported, production(rows_of())) == []


def test_a_yearly_file_through_an_earlier_month_is_current(exported: Path) -> None:
    daily = production(rows_of())
    export(exported, daily, 1)  # the yearly file now holds the year to date through January
    assert staleness.find_stale(exported, daily) == []
    assert staleness.find_stale(exported, daily, years=[YEAR + 1]) == []


def test_the_fix_of_each_reconcile_state() -> None:
    assert commands.reconcile_fix(commands.EXPORT_STALE, "2022-03") == "nw padam prepare && nw padam export 2022 3"
    assert commands.reconcile_fix("stale", "2022-03") == commands.FULL_REFRESH
    assert commands.reconcile_fix("unpublished", "2022-03") == commands.PREPARE
