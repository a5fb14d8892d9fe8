"""`nw report`: the charts' data built from a real ledger with known attempts (successes, failures,
a success after a failure, runs of a day, a month), and the page written beside plotly's script."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest

from northwind_elt.core import ledger
from northwind_elt.entry import report
from northwind_elt.entry.cli import main

DAYS = ("2024-01-15", "2024-01-16", "2024-01-17")
ROWS = {"extract-postgres": 830, "extract-csv": 2155, "load": 2985, "export": 2155}  # transform records none
REFUSED = 'connection to server at "127.0.0.1", port 1 failed: Connection refused <check SOURCE_PG_*>'


def succeed(pipeline: str, unit: str, step: str, rows: int | None, wall_s: float | None = None) -> None:
    since = ledger.now() - dt.timedelta(minutes=1)
    ledger.record(pipeline, unit, step, "success", started_at=since, rows=rows)
    if wall_s is not None:
        ledger.set_wall_seconds(pipeline, unit, step, since, wall_s)


def fail(pipeline: str, unit: str, step: str, error: str) -> None:
    ledger.record(pipeline, unit, step, "failed", started_at=ledger.now(), error=f"{error}\n---\nthe log's tail")


@pytest.fixture
def recorded(data_dir: Path) -> Path:
    """Northwind: a day done, a day whose postgres extract failed, a day whose load failed once
    and then succeeded; two ads runs of one day; a PADAM month."""
    for step in ("extract-postgres", "extract-csv", "load", "transform", "export"):
        succeed("northwind", DAYS[0], step, ROWS.get(step), wall_s=12.5 if step == "extract-postgres" else None)
    fail("northwind", DAYS[1], "extract-postgres", REFUSED)
    succeed("northwind", DAYS[1], "extract-csv", 2155)
    succeed("northwind", DAYS[2], "extract-postgres", 830)
    succeed("northwind", DAYS[2], "extract-csv", 2155)
    fail("northwind", DAYS[2], "load", "the load gate refused: extract-csv is not published")
    succeed("northwind", DAYS[2], "load", 2985, wall_s=30.0)
    succeed("ads", f"{DAYS[0]}/run-1", "ads-load", 10, wall_s=2.0)
    succeed("ads", f"{DAYS[0]}/run-2", "ads-load", 5, wall_s=3.0)
    succeed("padam", "2024-01", "padam-export", 62)
    return data_dir


def trace(fig, name: str, axis: str):
    """The figure's trace of `name` on the y axis `axis` ("y" rows, "y2" seconds, "y3" health)."""
    return next(t for t in fig.data if t.name == name and t.yaxis == axis)


def test_each_steps_rows_and_seconds_per_day_come_from_its_latest_attempt(recorded: Path) -> None:
    history = report.history("northwind")
    assert history.columns == list(DAYS)
    assert history.steps == ["extract-postgres", "extract-csv", "load", "transform", "export"]
    fig = report.figure(history)
    # A latest attempt that failed has no rows: its bar sits on the axis, where its mark shows.
    assert trace(fig, "extract-postgres", "y").y == (830, 0, 830)
    assert trace(fig, "extract-csv", "y").y == (2155, 2155, 2155)
    assert trace(fig, "load", "y").y == (2985, None, 2985)
    assert trace(fig, "transform", "y").y == (None, None, None)
    # Wall seconds as `nw run` set them, else the attempt's own duration (about a minute here).
    assert trace(fig, "extract-postgres", "y2").y[0] == 12.5
    assert trace(fig, "load", "y2").y[2] == 30.0
    assert trace(fig, "extract-csv", "y2").y[1] >= 60
    assert trace(fig, "load", "y2").y[1] is None


def test_failed_attempts_are_marked_on_their_steps_bars_and_counted_in_the_health_chart(recorded: Path) -> None:
    history = report.history("northwind")
    fig = report.figure(history)
    for axis in ("y", "y2"):
        assert trace(fig, "extract-postgres", axis).text == ("", report.FAILURE_MARK, "")
        assert trace(fig, "load", axis).text == ("", "", report.FAILURE_MARK)  # succeeded after a failure
        assert trace(fig, "extract-csv", axis).text == ("", "", "")
        load_color = report.STEP_COLORS[2]  # the third step
        assert trace(fig, "load", axis).marker.line.color == (load_color, load_color, report.FAILURE_COLOR)
    succeeded, failed = trace(fig, "steps succeeded", "y3"), trace(fig, "attempts failed", "y3")
    assert succeeded.y == (5, 1, 3)
    assert failed.y == (0, 1, 1)
    assert failed.base == succeeded.y  # stacked on the successes
    assert history.cell(DAYS[2], "load").outcome == "success after 1 failed attempt"
    assert history.cell(DAYS[1], "extract-postgres").errors == [REFUSED]


def test_a_run_pipelines_runs_add_up_per_day_and_a_month_pipeline_is_by_month(recorded: Path) -> None:
    ads = report.history("ads")
    assert ads.columns == [DAYS[0]]
    assert ads.cell(DAYS[0], "ads-load").rows == 15
    assert ads.cell(DAYS[0], "ads-load").seconds == 5.0
    padam = report.history("padam")
    assert (padam.columns, padam.column_kind) == (["2024-01"], "month")
    assert [h.pipeline for h in report.histories()] == ["northwind", "padam", "ads"]  # the registry's order
    assert report.history("northwind", last=2).columns == list(DAYS[1:])


def test_the_page_holds_every_pipelines_chart_its_failures_and_plotly_beside_it(
    recorded: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    assert main(["report", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Report of northwind 3 days, padam 1 month, ads 1 day; 2 failed attempts marked" in printed
    assert f"Open it in a browser: {out / 'index.html'}" in printed
    page = (out / "index.html").read_text()
    assert '<script src="plotly.min.js"' in page and "cdn" not in page.lower()
    assert (out / "plotly.min.js").read_text().startswith("/**\n* plotly.js")
    for name in ("northwind", "padam", "ads"):
        assert f'id="chart-{name}"' in page
    # The error's first line, escaped; never the log's tail.
    assert "Connection refused &lt;check SOURCE_PG_*&gt;" in page and "the log&#x27;s tail" not in page
    # The two failed cells; no summary row (northwind's newest day ended in successes).
    assert page.count('<tr class="failed">') == 2


def test_the_default_place_is_the_data_directorys_report_folder(data_dir: Path, capsys) -> None:
    assert main(["report"]) == 0
    assert (data_dir / "report" / "index.html").exists()
    assert "Nothing has run yet" in capsys.readouterr().out


def test_only_nw_report_loads_plotly() -> None:
    code = (
        "import sys; from northwind_elt.entry.cli import build_parser; build_parser().parse_args(['report']);"
        " import northwind_elt.entry.report; assert 'plotly' not in sys.modules, 'plotly loaded'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
