"""`nw airflow`: one setting for the port, and Airflow's failures in the ledger."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from northwind_elt.core import ledger
from northwind_elt.core.errors import ConfigError
from northwind_elt.entry import airflow_callbacks, airflow_local
from northwind_elt.pipelines import REGISTRY
from northwind_elt.pipelines.northwind.pipeline import NORTHWIND

DAY = dt.date(2024, 1, 10)


def test_the_ui_and_the_task_api_follow_airflow_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_PORT", "8091")
    env = airflow_local.environment()
    assert env["AIRFLOW__API__PORT"] == "8091"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:8091/execution/"
    assert env["AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE"] == "False"
    monkeypatch.setenv("AIRFLOW_SCHEDULED_RUNS", "true")
    assert airflow_local.environment()["AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE"] == "True"


@pytest.mark.parametrize("value", ["80a", "0", "70000", ""])
def test_a_port_that_is_not_one_is_refused_naming_the_setting(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("AIRFLOW_PORT", value)
    with pytest.raises(ConfigError, match="AIRFLOW_PORT"):
        airflow_local.environment()


def test_an_airflow_failure_without_an_entry_of_nw_run_is_recorded(data_dir: Path) -> None:
    since = ledger.now().isoformat()
    said = airflow_local.record_failure("northwind", "load", DAY, since, "Task API refused", "DAG northwind_daily")
    entry = ledger.latest("northwind", DAY)["load"]
    assert "recorded in the ledger" in said
    assert entry["status"] == "failed" and entry["error"].startswith("Airflow: Task API refused")


def test_a_failure_nw_run_recorded_in_the_same_try_is_not_recorded_twice(data_dir: Path) -> None:
    since = ledger.now().isoformat()
    ledger.record("northwind", DAY, "load", "failed", error="the load's own cause")
    said = airflow_local.record_failure("northwind", "load", DAY, since, "bash exited 1", "DAG northwind_daily")
    assert "already recorded by nw run" in said
    assert ledger.latest("northwind", DAY)["load"]["error"] == "the load's own cause"


def test_a_success_before_the_try_does_not_hide_its_failure(data_dir: Path) -> None:
    ledger.record("northwind", DAY, "load", "success", rows=3)
    airflow_local.record_failure("northwind", "load", DAY, None, "killed", "DAG northwind_daily")
    assert ledger.latest("northwind", DAY)["load"]["status"] == "failed"


def test_the_dags_failure_callback_records_a_try_that_never_ran_under_the_runs_unit(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The callback as Airflow calls it, running the real `nw airflow record-failure`.
    monkeypatch.setattr(airflow_callbacks, "NW", str(Path(sys.executable).with_name("nw")))
    callback = airflow_callbacks.failure_callbacks("padam", {"generate": "padam-insert-month"})["on_failure_callback"]
    ti = SimpleNamespace(task_id="generate", dag_id="padam_monthly", try_number=3, start_date=None)
    context = {"ti": ti, "ds": "2022-03-01", "run_id": "manual__1", "exception": RuntimeError("Task API refused")}
    callback(context)
    # PADAM's unit is the month: the run of 2022-03-01 is March's.
    entry = ledger.latest("padam", "2022-03")["padam-insert-month"]
    assert entry["status"] == "failed"
    assert entry["error"].startswith("Airflow: Task API refused") and "task generate, try 3" in entry["error"]
    callback({**context, "ti": SimpleNamespace(**{**vars(ti), "task_id": "a_task_of_no_step"})})
    assert len(ledger.recent("padam", 10)) == 1


def test_the_callback_records_every_step_that_runs_for_the_runs_unit() -> None:
    # PADAM's prepare takes no month (`nw padam prepare` covers them all and is recorded under the
    # day it ran): the run's month cannot name its entry, so its Airflow failures are left to it.
    recorded = {
        (pipeline.name, step)
        for pipeline in REGISTRY.values()
        for _, _, steps in pipeline.dags()
        for step in airflow_callbacks.steps_of_tasks(pipeline, steps).values()
    }
    every_step = {(pipeline.name, step.name) for pipeline in REGISTRY.values() for step in pipeline.steps}
    assert every_step - recorded == {("padam", "padam-prepare")}
    assert {("ads", "ads-load"), ("ads", "ads-archive"), ("padam", "padam-export")} <= recorded
    steps = airflow_callbacks.steps_of_tasks(NORTHWIND, NORTHWIND.steps)
    assert steps["extract_postgres"] == "extract-postgres" and steps["load"] == "load"


def test_backfills_run_the_daily_and_monthly_dags_for_each_day_or_month_of_the_range() -> None:
    assert airflow_local.backfill_dags() == {
        "northwind_daily": "day",
        "people_daily": "day",
        "padam_monthly": "month",
        "ads_archive": "day",
    }
    assert airflow_local.logical_days("day", dt.date(2024, 2, 28), dt.date(2024, 3, 1)) == {
        "2024-02-28",
        "2024-02-29",
        "2024-03-01",
    }
    assert airflow_local.logical_days("month", dt.date(2022, 1, 15), dt.date(2022, 3, 1)) == {
        "2022-02-01",
        "2022-03-01",
    }


@pytest.mark.parametrize(
    ("dag_id", "first", "said"),
    [
        ("ads_api_load", DAY, "no daily or monthly DAG 'ads_api_load'"),
        ("padam_monthly", dt.date(2022, 1, 2), "padam_monthly runs on the first day of each month"),
    ],
)
def test_a_backfill_airflow_could_not_wait_for_is_refused_before_anything_starts(
    dag_id: str, first: dt.date, said: str
) -> None:
    with pytest.raises(ConfigError, match=said):
        airflow_local.backfill(dag_id, first, first + dt.timedelta(days=20), wait=True)
