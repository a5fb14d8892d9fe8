"""What `nw run` prints: the past-day note (decided per pipeline by the registry), the rows a running
step has written so far (read from its Meltano output: lines as real runs log them), and each step's
line once while two steps run side by side (entry/run.py `_Display` on a plain output, explicit clock)."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

from northwind_elt.core import text
from northwind_elt.entry import run
from northwind_elt.entry.progress import LiveProgress
from northwind_elt.pipelines import REGISTRY

TODAY = dt.date(2026, 12, 7)
PAST = dt.date(2024, 1, 15)
PREFIX = "2026-12-07T06:24:03.369257Z [info     ] "


def pipeline(name: str):
    return REGISTRY[name]


def test_a_past_day_of_a_pipeline_reading_a_snapshot_says_so_once_in_one_line() -> None:
    note = run.past_day_note(pipeline("northwind"), PAST, today=TODAY)
    assert note == (
        "note: 2024-01-15 is a past day: northwind reads the source Postgres and order_details.csv as it is now"
        " (a snapshot, not a history); the day only names the partitions"
    )
    assert "\n" not in note
    people = run.past_day_note(pipeline("people"), TODAY - dt.timedelta(days=1), today=TODAY)
    assert people is not None and people.startswith("note: 2026-12-06 is a past day: people reads people.csv")


def test_today_and_a_source_with_a_history_print_no_note() -> None:
    assert run.past_day_note(pipeline("northwind"), TODAY, today=TODAY) is None
    assert run.past_day_note(pipeline("people"), TODAY + dt.timedelta(days=1), today=TODAY) is None
    # PADAM's month comes from a generator seeded by the month: a past month is that month's data.
    assert pipeline("padam").snapshot_source == ""
    assert run.past_day_note(pipeline("padam"), PAST, today=TODAY) is None
    # Every other registered pipeline names what it reads as it is now.
    assert all(p.snapshot_source for name, p in REGISTRY.items() if name != "padam")


def test_rows_so_far_come_from_what_the_plugins_report() -> None:
    seen = run._RowsSeen()
    assert seen.rows is None
    lines = [
        "meltano      Running job with name 'default:tap-postgres-arrow--northwind-to-target-parquet-postgres'",
        "tap-postgres-arrow--northwind Wrote 8 rows of public.categories to /data/.staging/x.parquet",
        "tap-postgres-arrow--northwind Wrote 830 rows of public.orders to /data/.staging/y.parquet",
    ]
    changed = [seen.take(PREFIX + line + "\n") for line in lines]
    assert changed == [False, True, True] and seen.rows == 838
    # The target then counts the same rows: the largest count, not their sum.
    for value in (8, 830):
        metric = '{"type":"counter","metric":"record_count","value":' + str(value) + ',"tags":{"stream":"s"}}'
        seen.take(f"{PREFIX}target-parquet-postgres METRIC: {metric}\n")
    assert seen.rows == 838
    batch = '{"type":"counter","metric":"batch_count","value":1,"tags":{"stream":"s","pid":1}}'
    assert not seen.take(f"{PREFIX}tap-postgres-arrow--northwind METRIC: {batch}\n")
    seen.take(f"{PREFIX}nw--northwind extract-postgres for 2024-01-15: committed, 1,207 rows\n")
    assert seen.rows == 1207


def test_the_commit_line_is_read_as_protocol_steps_says_it_with_separators_and_plurals() -> None:
    commit = f"{PREFIX}nw--northwind extract-postgres for 2024-01-15: committed, "
    for said, rows in ((text.plural(1, "row"), 1), (text.plural(1234567, "row"), 1234567), ("830 rows", 830)):
        seen = run._RowsSeen()
        assert seen.take(commit + said + "\n") and seen.rows == rows, said


def test_a_step_line_says_its_rows_and_seconds_in_the_projects_formats() -> None:
    line = run._line(run._progress(pipeline("northwind"), "extract-csv", PAST, 0.01, "failed"))
    assert line.split()[-2:] == ["<0.1", "failed"]  # no rows for a failed step; a quick one is never 0 s
    progress = LiveProgress(live=False, out=io.StringIO(), clock=lambda: 0.0, ticker=False)
    task = progress.start("extract-postgres")
    task.update(count=1234567)
    assert run._running_line(pipeline("northwind"), PAST, task, 1234.56).split()[3:5] == ["1,234,567", "1,234.6"]


def test_a_load_counts_its_tables_and_dbt_its_nodes() -> None:
    load = run._RowsSeen()
    for table, rows in (("categories", 8), ("orders", 830)):
        load.take(f"{PREFIX}target-postgres-arrow Stream '{table}': loaded {rows} rows from file:///x into \"raw\"\n")
    assert load.rows == 838
    dbt = run._RowsSeen()
    node = f"{PREFIX}dbt-postgres--northwind 06:27:29  "
    dbt.take(node + "1 of 32 START sql view model analytics.stg_categories ... [RUN]\n")
    assert dbt.detail == ""
    dbt.take(node + "2 of 32 OK created sql view model analytics.stg_customers ... [CREATE VIEW in 0.20s]\n")
    dbt.take(node + "1 of 32 OK created sql view model analytics.stg_categories ... [CREATE VIEW in 0.20s]\n")
    dbt.take(node + "14 of 32 OK created sql table model a.b  [SELECT 2155 in 0.14s]\n")
    dbt.take(node + "8 of 32 PASS unique_combination_of_columns_stg_customers_customer_id ... [PASS in 0.81s]\n")
    # Results as they come (threads finish out of order); a model's SELECT count is not the step's rows.
    assert dbt.detail == "dbt 4/32" and dbt.rows is None


def test_two_steps_side_by_side_each_print_their_line_once(data_dir: Path) -> None:
    northwind = pipeline("northwind")
    clock = [0.0]
    out = io.StringIO()
    with LiveProgress(live=False, out=out, clock=lambda: clock[0], ticker=False) as progress:
        display = run._Display(northwind, PAST, False, progress)
        display.started("extract-postgres")
        display.started("extract-csv")
        display.output(
            "extract-postgres", f"{PREFIX}tap-postgres-arrow--northwind Wrote 830 rows of public.orders to x\n"
        )
        clock[0] = 6.0
        progress.tick()
        display.ended("extract-csv", run._progress(northwind, "extract-csv", PAST, 6.0, "success"))
        clock[0] = 12.0
        progress.tick()
        display.ended("extract-postgres", run._progress(northwind, "extract-postgres", PAST, 12.0, "success"))
    lines = out.getvalue().splitlines()
    assert lines[0] == "  ... extract-postgres running 6 s (830 rows), extract-csv running 6 s"
    assert lines[2] == "  ... extract-postgres running 12 s (830 rows)"
    steps = [line.split() for line in lines if line.startswith("northwind ")]
    assert [(words[1], words[-1]) for words in steps] == [("extract-csv", "success"), ("extract-postgres", "success")]


def test_a_running_step_on_the_live_display_has_the_columns_of_its_final_line() -> None:
    northwind = pipeline("northwind")
    progress = LiveProgress(live=False, out=io.StringIO(), clock=lambda: 3.0, ticker=False)
    task = progress.start("transform")
    task.update(count=1207, detail="dbt 3/32")
    running = run._running_line(northwind, PAST, task, 6.0)  # started at 3.0
    final = run._line(("northwind", "transform", PAST.isoformat(), "1,207", "9.0", "success"))
    assert running.index("1,207") == final.index("1,207") and running.index("3.0") == final.index("9.0")
    assert running.endswith("running (dbt 3/32)")
