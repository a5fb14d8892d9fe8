"""Audited days: a bad day never blocks another, and the mart never serves rows that failed."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from support import SOURCE_CSV, Pipeline, csv_env

GOOD_DAY = "2024-08-01"
OTHER_DAY = "2024-08-02"
HEADER, *LINES = SOURCE_CSV.read_text().splitlines()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def published(pipeline: Pipeline, day: str) -> tuple[int, str]:
    with pipeline.analytics() as conn:
        count, total = conn.execute(
            "SELECT count(*), coalesce(sum(line_total), 0)::text FROM analytics.orders_with_details WHERE _day = %s",
            [day],
        ).fetchone()
    return count, total


@pytest.fixture(scope="module")
def good_days(pipeline: Pipeline) -> Pipeline:
    """A clean day, exported: the state every bad input below must leave intact; and another day
    loaded, which transforms and exports while GOOD_DAY's audit has failed (the last test but one)."""
    pipeline.run_ok("daily", GOOD_DAY)
    pipeline.load_ok(OTHER_DAY)
    return pipeline


def _bad_file(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "order_details.csv"
    path.write_text("\n".join([HEADER, *lines]) + "\n")
    return path


BAD_INPUTS = {
    "a duplicate line": (lambda: [*LINES, LINES[0]], "unique_combination_of_columns_orders_with_details_candidate"),
    # Also an order_id not in orders: above 32767 it cannot even be one of orders' smallint keys.
    "an order_id above 32767": (
        lambda: [*LINES, "40000,11,14,12,0"],
        "relationships_same_day_orders_with_details_candidate",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_a_bad_day_fails_its_own_audit_only_and_keeps_its_published_rows(
    good_days: Pipeline, tmp_path: Path, case: str
) -> None:
    pipeline = good_days
    make_lines, failing_test = BAD_INPUTS[case]
    before = published(pipeline, GOOD_DAY)
    exported = digest(pipeline.output(GOOD_DAY, "csv"))
    pipeline.run_ok("extract-csv", GOOD_DAY, extra_env=csv_env(_bad_file(tmp_path, make_lines())))
    pipeline.run_ok("load", GOOD_DAY)
    failed = pipeline.run("transform", GOOD_DAY)
    assert failed.returncode != 0
    cause = next(line for line in failed.stderr.splitlines() if line.startswith("Cause: "))
    assert failing_test in cause and re.search(r"\b\d+ failing rows?, see ", cause), cause
    assert "audit_2024_08_01" in cause, "the failing rows are kept in the day's audit schema"
    # The published mart and the export keep the previous day.
    assert published(pipeline, GOOD_DAY) == before
    refused = pipeline.run("export", GOOD_DAY)
    assert refused.returncode != 0
    assert "refused: transform for 2024-08-01 is failed" in refused.stderr and failing_test in refused.stderr
    assert f"nw run --date {GOOD_DAY} --from extract-postgres" in refused.stderr
    assert digest(pipeline.output(GOOD_DAY, "csv")) == exported
    status = pipeline.status(GOOD_DAY)
    assert failing_test in status


def test_with_a_bad_day_failed_another_day_publishes_and_the_clean_file_repairs_it(good_days: Pipeline) -> None:
    """In file order this runs after the bad days above, with GOOD_DAY's last transform failed."""
    pipeline = good_days
    exported = digest(pipeline.output(GOOD_DAY, "csv"))
    # Another day transforms and exports as if nothing happened.
    pipeline.run_ok("transform", OTHER_DAY)
    pipeline.run_ok("export", OTHER_DAY)
    # The clean file repairs the day: the same export as before the bad days.
    pipeline.run_ok("extract-csv", GOOD_DAY)
    pipeline.run_ok("load", GOOD_DAY)
    pipeline.run_ok("transform", GOOD_DAY)
    pipeline.run_ok("export", GOOD_DAY)
    assert digest(pipeline.output(GOOD_DAY, "csv")) == exported


def test_a_negative_quantity_is_a_warning_listed_in_the_status(good_days: Pipeline, tmp_path: Path) -> None:
    """Last of the module: OTHER_DAY (its extract-postgres stands) gets a CSV with a negative quantity."""
    pipeline = good_days
    day = OTHER_DAY
    first, *rest = LINES
    order_id, product_id, price, _, discount = first.split(",")
    negative = ",".join([order_id, product_id, price, "-5", discount])
    pipeline.run_ok("extract-csv", day, extra_env=csv_env(_bad_file(tmp_path, [negative, *rest])))
    pipeline.run_ok("load", day)
    pipeline.run_ok("transform", day)
    pipeline.run_ok("export", day)
    status = pipeline.status(day)
    assert re.search(
        r"transform: dbt warnings: value_at_least_orders_with_details_candidate_quantity__0 \(warn: 1 failing", status
    )
    assert published(pipeline, day)[0] == len(LINES)
