"""Counts, numbers and durations read the same in every view: plurals that agree, thousands
separators, seconds with one decimal, spans in days or hours (never Python's timedelta text)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from northwind_elt.core import ledger, text
from northwind_elt.entry import status
from northwind_elt.pipelines.ads import commands as ads

DAY = dt.date(2024, 1, 15)


@pytest.mark.parametrize(
    ("count", "word", "words", "expected"),
    [
        (0, "row", None, "0 rows"),
        (1, "row", None, "1 row"),
        (2, "day", None, "2 days"),
        (1, "object", None, "1 object"),
        (1_234_567, "row", None, "1,234,567 rows"),
        (1, "refused response", None, "1 refused response"),
        (3, "entry", "entries", "3 entries"),
    ],
)
def test_a_count_and_its_word_agree(count: int, word: str, words: str | None, expected: str) -> None:
    assert text.plural(count, word, words) == expected


def test_numbers_have_thousands_separators_and_seconds_one_decimal() -> None:
    assert (text.number(None), text.number(0), text.number(12_345)) == ("", "0", "12,345")
    assert text.seconds(None) == ""
    assert text.seconds(0) == "0.0"
    assert text.seconds(0.01) == "<0.1"  # a quick step is not a 0-second one
    assert text.seconds(1.25) in ("1.2", "1.3") and text.seconds(1234.56) == "1,234.6"


@pytest.mark.parametrize(
    ("span", "expected"),
    [
        (dt.timedelta(hours=168), "7 days"),
        (dt.timedelta(hours=24), "1 day"),
        (dt.timedelta(hours=36), "36 hours"),
        (dt.timedelta(hours=1), "1 hour"),
        (dt.timedelta(minutes=90), "90 minutes"),
        (dt.timedelta(seconds=61), "61 seconds"),
        (dt.timedelta(0), "0 seconds"),
    ],
)
def test_a_span_is_said_in_its_largest_whole_unit(span: dt.timedelta, expected: str) -> None:
    assert text.duration(span) == expected
    assert ":" not in text.duration(span)


def test_the_overview_says_one_row_not_one_rows(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    started = ledger.now()
    ledger.record("northwind", DAY, "export", "success", rows=1, started_at=started)
    ledger.set_wall_seconds("northwind", DAY, "export", started, 0.5)
    status.overview(7)
    out = capsys.readouterr().out
    assert "1 row 0.5 s" in out and "1 rows" not in out


def attempt(step: str, unit: str, state: str, rows: int | None, seconds: float | None, notes: str) -> dict:
    return {
        "finished_at": "2024-01-15T10:00:00+00:00",
        "step": step,
        "day": unit,
        "status": state,
        "rows": rows,
        "wall_s": None,
        "duration_s": seconds,
        "notes": notes if state == "success" else None,
        "error": None if state == "success" else f"{notes}\nmore of the output",
    }


def test_nw_ads_status_shows_its_attempts_under_a_header_with_the_shared_number_formats() -> None:
    lines = ads._attempt_lines(
        [
            attempt("ads-load", "2024-01-15/run-b", "failed", None, 2.25, "S3 down"),
            attempt("ads-load", "2024-01-15/run-a", "success", 1_234, 3.0, "100 new rows"),
            attempt("ads-archive", "2024-01-15", "success", 0, 0.01, "nothing to archive"),
        ]
    )
    assert lines[0] == "Latest attempts (newest first):"
    assert re.fullmatch(r"  finished \(UTC\)\s+step\s+day/run\s+status\s+rows\s+seconds  notes", lines[1]), lines[1]
    assert re.fullmatch(r"  \S+\s+ads-load\s+2024-01-15/run-b\s+failed\s+2\.\d  S3 down", lines[2]), lines[2]
    assert re.fullmatch(r"  \S+\s+ads-load\s+2024-01-15/run-a\s+success\s+1,234\s+3\.0  100 new rows", lines[3])
    assert re.fullmatch(r"  \S+\s+ads-archive\s+2024-01-15\s+success\s+0\s+<0\.1  nothing to archive", lines[4])
    # The columns line up under their names.
    header = lines[1]
    cells = [("ads-load", "failed"), ("ads-load", "success"), ("ads-archive", "success")]
    for line, (step, outcome) in zip(lines[2:], cells, strict=True):
        assert line[header.index("step") :].startswith(step), line
        assert line[header.index("status") :].startswith(outcome), line
        assert line.rindex("  ") + 2 == header.index("notes"), line
    assert ads._attempt_lines([]) == []
