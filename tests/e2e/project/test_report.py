"""`nw report` in a real browser: the report of the session's real Northwind day, and of a real failed
attempt (`nw run` of the postgres extract against a source port where nothing listens), opens in
Debian's headless Chromium, which runs plotly's script: the charts are drawn (plotly's SVG with the
steps' bars) and the failure is marked on its bar. Without a browser the test is skipped, or fails
where NW_REQUIRE_BROWSER=1 (CI) says one must be there."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

import pytest
from support import NORTHWIND_DAY, Pipeline, free_port

FAILED_DAY = "2024-01-16"
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
# Headless on a closed network: nothing of the browser's own reaches out.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


@pytest.fixture(scope="session")
def chromium() -> str:
    """The browser; asked for before the session's day is run, so a skip costs nothing."""
    found = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    if found is None:
        message = "no Chromium installed (Debian: apt-get install chromium): the report was not opened in a browser"
        if os.environ.get("NW_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{message}, and NW_REQUIRE_BROWSER=1 requires one")
        pytest.skip(message)
    return found


def render(browser: str, page: Path, profile: Path) -> str:
    """The page's DOM once its scripts have run."""
    command = [
        browser,
        *FLAGS,
        f"--user-data-dir={profile}",
        "--virtual-time-budget=20000",
        "--dump-dom",
        page.as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def chart(dom: str, pipeline: str) -> str:
    """The DOM of a pipeline's chart: its div, up to the next section."""
    start = dom.index(f'id="chart-{pipeline}"')
    end = dom.find("<section", start)
    return dom[start : end if end != -1 else len(dom)]


def test_the_report_of_a_real_day_and_a_failed_attempt_draws_its_charts_in_a_browser(
    chromium: str, northwind_day: Pipeline, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    # The session's ledger, copied: the failure below stays out of the other tests' status.
    with (
        closing(sqlite3.connect(northwind_day.data_dir / "ledger.sqlite")) as source,
        closing(sqlite3.connect(data / "ledger.sqlite")) as copy,
    ):
        source.backup(copy)
        # Only the session's Northwind day: the failures other tests left in the session's ledger
        # would be marked too (and their days crowd the axis).
        copy.execute("DELETE FROM step_runs WHERE NOT (pipeline = 'northwind' AND unit = ?)", (NORTHWIND_DAY,))
        copy.commit()
    env = {"NW_DATA_DIR": str(data), "SOURCE_PG_PORT": str(free_port())}
    failed = northwind_day.nw("--date", FAILED_DAY, "run", "extract-postgres", extra_env=env)
    assert failed.returncode != 0 and "FAILED: step 'extract-postgres'" in failed.stderr, failed.stderr[-3000:]

    out = tmp_path / "report"
    made = northwind_day.nw("report", "--out", str(out), extra_env=env)
    assert made.returncode == 0, made.stdout + made.stderr
    assert f"Open it in a browser: {out / 'index.html'}" in made.stdout
    assert "1 failed attempt marked" in made.stdout

    dom = render(chromium, out / "index.html", tmp_path / "profile")
    drawn = chart(dom, "northwind")
    # plotly drew the figure: its SVG, a bar trace per step, bars with a shape, both days on the axis.
    assert drawn.count('class="main-svg"') >= 2, drawn[:3000]
    bars = re.findall(r'<g class="trace bars"', drawn)
    assert len(bars) >= 2 * 5 + 2, len(bars)  # rows and seconds of the five steps, and the health chart
    assert re.search(r'<path d="M[\d.,]+V[\d.,]+H[\d.,]+V[\d.,]+Z"', drawn), "no bar has a shape"
    for day in (NORTHWIND_DAY, FAILED_DAY):
        assert re.search(rf"<text[^>]*>{day}</text>", drawn), day
    # The failure's mark on its bars (rows and seconds), the failed attempt in the health chart's
    # legend, and its cause in the table under the chart.
    marks = re.findall(r'<text class="bartext[^"]*"[^>]*>(?:<[^>]+>)*✕', drawn)
    assert len(marks) == 2, marks
    assert ">attempts failed<" in drawn
    assert re.search(rf"<td>{FAILED_DAY}</td><td>extract-postgres</td><td>failed</td>", dom)
