"""Bad input is refused with a message naming what is wrong, and nothing is written."""

from __future__ import annotations

import re

import pytest
from support import SOURCE_CSV, Pipeline, csv_env


def files_under(path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")} if path.exists() else set()


@pytest.mark.parametrize(
    ("day", "reason"),
    [
        ("2024-02-30", "no such calendar day"),
        ("2024-1-5", "not in YYYY-MM-DD form"),
        ("../x", "not in YYYY-MM-DD form"),
        ("", "not in YYYY-MM-DD form"),
        ("2999-01-01", "after today"),
    ],
)
def test_invalid_day_is_refused_before_anything_is_written(pipeline: Pipeline, day: str, reason: str) -> None:
    before = files_under(pipeline.data_dir)
    result = pipeline.nw("--date", day, "run", "daily")
    assert result.returncode != 0
    assert reason in result.stderr
    assert result.stderr.startswith(f"ERROR: invalid day {day!r}")
    assert files_under(pipeline.data_dir) == before


def test_invalid_run_date_is_refused_by_meltano_jobs_too(pipeline: Pipeline) -> None:
    before = files_under(pipeline.data_dir)
    result = pipeline.meltano("run", "extract-csv", day="2024-02-30")
    assert result.returncode != 0
    assert "no such calendar day" in result.stdout + result.stderr
    assert {f for f in files_under(pipeline.data_dir) - before if "2024-02-30" in f} == set()


def test_malformed_csv_fails_naming_file_line_and_column_and_writes_nothing(pipeline: Pipeline, tmp_path) -> None:
    lines = SOURCE_CSV.read_text().splitlines()
    lines[3] = lines[3].split(",")[0] + ",42,9.8,ten,0"  # line 4 of the file: quantity is not an integer
    bad = tmp_path / "order_details.csv"
    bad.write_text("\n".join(lines) + "\n")
    day = "2024-03-01"
    result = pipeline.run("extract-csv", day, extra_env=csv_env(bad))
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert f"{bad}: line 4, column 'quantity': 'ten' is not an integer" in output
    assert not (pipeline.data_dir / "csv" / day).exists()
    assert not (pipeline.data_dir / "_manifests" / day / "extract-csv.json").exists()
    status = pipeline.nw("--date", day, "status")
    assert re.search(r"^extract-csv\s+failed", status.stdout, re.MULTILINE)
