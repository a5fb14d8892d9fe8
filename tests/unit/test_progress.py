"""entry/progress.py: what a pipe or a log sees (plain lines, driven by an explicit clock: no sleeps),
and on a terminal (rich's live display) that a finished task's line is printed once."""

from __future__ import annotations

import io

from northwind_elt.entry.progress import LiveProgress, describe


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def plain(clock: Clock, **kwargs) -> tuple[LiveProgress, io.StringIO]:
    out = io.StringIO()
    return LiveProgress(live=False, out=out, clock=clock, ticker=False, **kwargs), out


def test_plain_mode_says_what_still_runs_after_five_quiet_seconds_and_each_final_line_once() -> None:
    clock = Clock()
    progress, out = plain(clock)
    with progress:
        first, second = progress.start("extract-postgres"), progress.start("extract-csv")
        clock.now = 4.9
        progress.tick()
        assert out.getvalue() == ""  # not yet quiet for 5 s
        clock.now = 5.0
        first.update(count=1207)
        progress.tick()
        assert out.getvalue() == "  ... extract-postgres running 5 s (1,207 rows), extract-csv running 5 s\n"
        clock.now = 7.0
        progress.tick()  # a line was printed 2 s ago
        second.finish("extract-csv success")
        clock.now = 11.9
        progress.tick()  # the final line was printed 4.9 s ago
        clock.now = 12.0
        first.update(detail="dbt 3/9")
        progress.tick()
        first.finish("extract-postgres success")
        first.finish("extract-postgres success")  # finishing twice prints nothing more
        clock.now = 30.0
        progress.tick()  # nothing runs: nothing to say
    assert out.getvalue().splitlines() == [
        "  ... extract-postgres running 5 s (1,207 rows), extract-csv running 5 s",
        "extract-csv success",
        "  ... extract-postgres running 12 s (1,207 rows; dbt 3/9)",
        "extract-postgres success",
    ]


def test_other_output_keeps_the_plain_lines_away_and_a_custom_summary_is_used() -> None:
    clock = Clock()
    progress, out = plain(clock, every=5.0, summary=lambda tasks, now: "still: " + ",".join(t.name for t in tasks))
    with progress:
        progress.start("tap-a")
        progress.start("tap-b").advance(3)
        clock.now = 4.0
        progress.touch()  # e.g. a verbose run's own line
        clock.now = 8.0
        progress.tick()
        assert out.getvalue() == ""
        clock.now = 9.0
        progress.tick()
    assert out.getvalue() == "still: tap-a,tap-b\n"


def test_a_task_unknown_count_shows_none_and_advance_counts_from_zero() -> None:
    clock = Clock()
    progress, _ = plain(clock)
    with progress:
        task = progress.start("load")
        assert task.count is None
        task.advance(2)
        task.advance()
        assert task.count == 3


def test_live_mode_prints_a_finished_line_once_and_leaves_no_running_row() -> None:
    out = io.StringIO()
    clock = Clock()
    with LiveProgress(live=True, out=out, clock=clock, render=lambda task, now: f"{task.name} RUNNING") as progress:
        a, b = progress.start("step-a"), progress.start("step-b")
        a.finish("step-a FINAL")
        progress.print("a line of its own")
        b.finish("step-b FINAL")
    text = out.getvalue()
    assert text.count("step-a FINAL") == 1 and text.count("step-b FINAL") == 1
    assert text.count("a line of its own") == 1
    assert progress.running == []


def test_a_running_task_says_its_count_in_the_projects_plural_and_number_format() -> None:
    one, many = LiveProgress(live=False, clock=Clock()), LiveProgress(live=False, clock=Clock())
    single, plenty = one.start("extract-csv"), many.start("extract-postgres", unit="day")
    single.update(count=1)
    plenty.update(count=12070)
    assert describe(single, 3.0) == "extract-csv running 3 s (1 row)"
    assert describe(plenty, 3.0) == "extract-postgres running 3 s (12,070 days)"
