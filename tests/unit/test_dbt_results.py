"""dbt's outcome for a day (protocol/dbt.py), read from run_results.json and manifest.json as dbt
writes them: until now checked only through whole Meltano runs (tests/e2e/northwind/test_audit.py)."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest

from northwind_elt.core.errors import PipelineError
from northwind_elt.protocol import dbt

DAY = dt.date(2024, 8, 1)
TARGET = "${NW_DATA_DIR}/dbt/people"  # any pipeline's dbt_target_path
UNIQUE = "test.nw_transform.unique_combination_of_columns_orders_with_details_candidate_order_id__product_id.1a2b3c"
AUDIT_TABLE = '"analytics"."analytics_audit_2024_08_01"."unique_combination_of_columns_orders_with_details_candidate"'
# The same table as dbt's parsed project names it: the day's schema is decided when the test runs.
PARSED_AUDIT_TABLE = '"analytics"."analytics_audit"."unique_combination_of_columns_orders_with_details_candidate"'
BY_DAY = {"meta": {"audit_by_day": True}}
NEGATIVE = "test.nw_transform.value_at_least_orders_with_details_candidate_quantity__0.4d5e6f"


@pytest.fixture
def target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NW_DATA_DIR", str(tmp_path))
    folder = tmp_path / "dbt" / "people"
    folder.mkdir(parents=True)
    return folder


def write_results(target: Path, results: list[dict], day: str | None = DAY.isoformat(), as_var: bool = False) -> Path:
    """dbt's results of a build for `day`: pinned in RUN_DATE, which dbt records in its metadata
    (plugins/utilities.meltano.yml), or given by hand as the `day` var."""
    path = target / "run_results.json"
    args = {"vars": {"day": day} if day and as_var else {}}
    metadata = {"env": {"RUN_DATE": day} if day and not as_var else {}}
    path.write_text(json.dumps({"metadata": metadata, "args": args, "results": results}))
    return path


def write_manifest(target: Path, nodes: dict[str, dict]) -> None:
    (target / "manifest.json").write_text(json.dumps({"nodes": nodes}))


def result(unique_id: str, status: str, **more) -> dict:
    return {"unique_id": unique_id, "status": status, **more}


def test_no_results_means_dbt_build_did_not_run(target: Path) -> None:
    with pytest.raises(PipelineError) as raised:
        dbt.check_run("transform", DAY, TARGET)
    assert raised.value.cause == f"dbt left no results ({target / 'run_results.json'}); dbt build did not run"
    assert raised.value.rerun == "nw run --date 2024-08-01 --from transform"


@pytest.mark.parametrize("as_var", [False, True])
@pytest.mark.parametrize("built_for", ["2024-07-31", None])
def test_results_of_another_day_are_refused(target: Path, built_for: str | None, as_var: bool) -> None:
    write_results(target, [result("model.nw_transform.stg_orders", "success")], day=built_for, as_var=as_var)
    with pytest.raises(PipelineError) as raised:
        dbt.check_run("transform", DAY, TARGET)
    assert raised.value.cause == f"dbt's last run was for day {built_for!r}, not 2024-08-01"


@pytest.mark.parametrize("as_var", [False, True])
def test_results_of_the_day_pass_whether_pinned_in_run_date_or_given_as_a_var(target: Path, as_var: bool) -> None:
    write_results(target, [result("model.nw_transform.stg_orders", "success")], as_var=as_var)
    assert dbt.check_run("transform", DAY, TARGET) == []


def test_a_failed_test_is_named_with_its_failing_rows_and_the_audit_table_that_keeps_them(target: Path) -> None:
    write_manifest(
        target, {UNIQUE: {"relation_name": PARSED_AUDIT_TABLE, "config": BY_DAY}, "model.nw_transform.stg_orders": {}}
    )
    write_results(
        target,
        [
            result("model.nw_transform.stg_orders", "success"),
            result(UNIQUE, "fail", failures=3, message="Got 3 results, configured to fail if != 0"),
            result("model.nw_transform.orders_with_details", "skipped"),
            result("exposure.nw_transform.orders_export", "no-op"),
        ],
    )
    with pytest.raises(PipelineError) as raised:
        dbt.check_run("transform", DAY, TARGET)
    name = "unique_combination_of_columns_orders_with_details_candidate_order_id__product_id"
    assert raised.value.cause == f"dbt build failed: {name} (fail: 3 failing rows, see {AUDIT_TABLE})"


def test_a_failed_model_is_named_with_its_error_and_every_failure_is_listed(target: Path) -> None:
    write_results(
        target,
        [
            result("model.nw_transform.stg_orders", "error", message='  relation "raw.orders" does not exist\n'),
            result(UNIQUE, "fail", failures=1, relation_name=AUDIT_TABLE),  # the result's own relation name
        ],
    )
    with pytest.raises(PipelineError) as raised:
        dbt.check_run("transform", DAY, TARGET)  # no manifest: the results say all there is
    assert raised.value.cause == (
        'dbt build failed: model.nw_transform.stg_orders (error: relation "raw.orders" does not exist); '
        "unique_combination_of_columns_orders_with_details_candidate_order_id__product_id "
        f"(fail: 1 failing row, see {AUDIT_TABLE})"
    )


def test_warnings_pass_the_day_and_are_returned_described(target: Path) -> None:
    write_manifest(
        target, {NEGATIVE: {"relation_name": '"analytics"."analytics_audit"."value_at_least"', "config": BY_DAY}}
    )
    write_results(
        target,
        [
            result("model.nw_transform.stg_orders", "success"),
            result(NEGATIVE, "warn", failures=1),
            result(UNIQUE, "pass"),
        ],
    )
    assert dbt.check_run("transform", DAY, TARGET) == [
        "value_at_least_orders_with_details_candidate_quantity__0 "
        '(warn: 1 failing row, see "analytics"."analytics_audit_2024_08_01"."value_at_least")'
    ]


def test_a_failed_test_without_a_stored_table_says_only_its_count(target: Path) -> None:
    write_results(target, [result(UNIQUE, "fail", failures=2)])
    failed, warned = dbt.outcome(json.loads((target / "run_results.json").read_text()), TARGET)
    assert failed == [
        "unique_combination_of_columns_orders_with_details_candidate_order_id__product_id (fail: 2 failing rows)"
    ]
    assert warned == []


def test_failures_since_reads_only_a_run_that_started_after_the_attempt(target: Path) -> None:
    since = dt.datetime(2024, 8, 1, 12, tzinfo=dt.UTC)
    assert dbt.failures_since(since, TARGET) is None  # no run at all
    path = write_results(target, [result(UNIQUE, "fail", failures=1)])
    before = (since - dt.timedelta(seconds=1)).timestamp()
    os.utime(path, (before, before))
    assert dbt.failures_since(since, TARGET) is None  # another attempt's results
    after = (since + dt.timedelta(seconds=1)).timestamp()
    os.utime(path, (after, after))
    assert dbt.failures_since(since, TARGET) == [
        "unique_combination_of_columns_orders_with_details_candidate_order_id__product_id (fail: 1 failing row)"
    ]


def test_a_test_that_keeps_its_failures_whole_is_named_in_its_parsed_schema(target: Path) -> None:
    """PADAM's tests (no day): their stored failures are where dbt's parsed project says."""
    padam_audit = '"padam_warehouse"."padam_audit"."year_to_date_adds_up"'
    test_id = "test.nw_transform.year_to_date_adds_up"
    write_manifest(target, {test_id: {"relation_name": padam_audit, "config": {"meta": {"audit_by_day": False}}}})
    write_results(target, [result(test_id, "fail", failures=4)])
    failed, _ = dbt.outcome(json.loads((target / "run_results.json").read_text()), TARGET)
    assert failed == [f"year_to_date_adds_up (fail: 4 failing rows, see {padam_audit})"]


def test_a_build_whose_day_was_not_recorded_counts_only_if_it_ran_after_the_step_began(target: Path) -> None:
    """A bare `meltano run transform` with RUN_DATE set by hand: dbt did not record the day."""
    path = write_results(target, [result("model.nw_transform.stg_orders", "success")], day=None)
    began = dt.datetime(2024, 8, 1, 12, tzinfo=dt.UTC)
    after, before = (began + dt.timedelta(seconds=1)).timestamp(), (began - dt.timedelta(seconds=1)).timestamp()
    os.utime(path, (after, after))
    assert dbt.check_run("transform", DAY, TARGET, since=began) == []
    os.utime(path, (before, before))  # a build of another attempt, day unknown
    with pytest.raises(PipelineError) as raised:
        dbt.check_run("transform", DAY, TARGET, since=began)
    assert raised.value.cause == "dbt's last run was for day None, not 2024-08-01"
