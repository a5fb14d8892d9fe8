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


def test_the_dags_failure_callback_records_a_try_that_never_ran_under_the_runs_day(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The callback as Airflow calls it, running the real `nw airflow record-failure`.
    monkeypatch.setattr(airflow_callbacks, "NW", str(Path(sys.executable).with_name("nw")))
    callback = airflow_callbacks.failure_callbacks("padam", {"generate": "padam-insert-month"})["on_failure_callback"]
    ti = SimpleNamespace(task_id="generate", dag_id="padam_monthly", try_number=3, start_date=None)
    context = {"ti": ti, "ds": "2022-03-01", "run_id": "manual__1", "exception": RuntimeError("Task API refused")}
    callback(context)
    entry = ledger.latest("padam", dt.date(2022, 3, 1))["padam-insert-month"]
    assert entry["status"] == "failed"
    assert entry["error"].startswith("Airflow: Task API refused") and "task generate, try 3" in entry["error"]
    callback({**context, "ti": SimpleNamespace(**{**vars(ti), "task_id": "a_task_of_no_step"})})
    assert len(ledger.recent("padam", 10)) == 1
