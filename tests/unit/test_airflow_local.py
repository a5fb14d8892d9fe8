"""`nw airflow`: one setting for the port, and Airflow's failures in the ledger."""

from __future__ import annotations

import datetime as dt
import io
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from northwind_elt.core import ledger
from northwind_elt.core.errors import ConfigError
from northwind_elt.entry import airflow_callbacks, airflow_local
from northwind_elt.entry.progress import LiveProgress
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


def test_airflow_is_sized_to_the_machine_not_to_a_server(monkeypatch: pytest.MonkeyPatch) -> None:
    # Airflow 3.3's defaults: 32 LocalExecutor workers, 2 DAG parsing processes (and 1 API server worker).
    assert airflow_local.machine_sizing(2) == {
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
    }
    assert airflow_local.machine_sizing(16)["AIRFLOW__CORE__PARALLELISM"] == "16"
    assert airflow_local.machine_sizing(0)["AIRFLOW__CORE__PARALLELISM"] == "1"
    for name in airflow_local.machine_sizing(2):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(airflow_local.os, "cpu_count", lambda: 3)
    env = airflow_local.environment()
    assert env["AIRFLOW__CORE__PARALLELISM"] == "3" and env["AIRFLOW__API__WORKERS"] == "1"
    # Each one overridable from .env (an empty value, docker compose's for one not set, is no override).
    monkeypatch.setenv("AIRFLOW__CORE__PARALLELISM", "8")
    monkeypatch.setenv("AIRFLOW__API__WORKERS", "")
    env = airflow_local.environment()
    assert env["AIRFLOW__CORE__PARALLELISM"] == "8" and env["AIRFLOW__API__WORKERS"] == "1"


def test_a_backfill_runs_as_many_units_at_once_as_the_dag_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NW_DAG_MAX_ACTIVE_RUNS", raising=False)
    assert airflow_local.runs_at_once("northwind_daily") == 1
    assert airflow_local.order_note("northwind_daily", "day", 1) == (
        "one day after another, in order (max_active_runs 1: NW_DAG_MAX_ACTIVE_RUNS)"
    )
    monkeypatch.setenv("NW_DAG_MAX_ACTIVE_RUNS", "3")
    assert airflow_local.runs_at_once("people_daily") == 3
    assert airflow_local.order_note("people_daily", "day", 3) == (
        "up to 3 days at once (max_active_runs 3: NW_DAG_MAX_ACTIVE_RUNS)"
    )
    # A PADAM month follows the bookmark of the one before, whatever the setting.
    assert airflow_local.runs_at_once("padam_monthly") == 1
    assert airflow_local.order_note("padam_monthly", "month", 1).startswith("one month at a time")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def task(task_id: str, state: str | None, started: dt.datetime | None = None, tried: int = 1, seconds=None):
    return airflow_local.TaskRun(task_id, state, tried, started, seconds)


def test_a_waited_backfill_shows_each_change_and_what_still_runs_every_five_quiet_seconds() -> None:
    clock, out = Clock(), io.StringIO()
    noon = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
    days = {"2024-01-10", "2024-01-11"}
    with LiveProgress(live=False, out=out, clock=clock, ticker=False) as progress:
        watch = airflow_local.BackfillWatch("northwind_daily", days, "day", progress)
        running = {
            "2024-01-10": airflow_local.DayRun("running", (task("extract_postgres", "running", noon),)),
            "2024-01-11": airflow_local.DayRun("queued"),
        }
        watch.show(running, noon + dt.timedelta(seconds=3))
        clock.now += 4.9
        progress.tick()  # 4.9 s of quiet: nothing yet
        watch.show(running, noon + dt.timedelta(seconds=8))  # nothing changed: nothing printed
        clock.now += 0.1
        progress.tick()
        retrying = {
            "2024-01-10": airflow_local.DayRun(
                "running", (task("extract_postgres", "success", noon, seconds=9.6), task("load", "up_for_retry"))
            ),
            "2024-01-11": airflow_local.DayRun("queued"),
        }
        watch.show(retrying, noon + dt.timedelta(seconds=20))
        clock.now += 5
        progress.tick()
        next_day = {
            "2024-01-10": airflow_local.DayRun(
                "success", (task("extract_postgres", "success", noon, seconds=9.6), task("load", "success", tried=2))
            ),
            "2024-01-11": airflow_local.DayRun(
                "running", (task("extract_postgres", "running", noon, tried=1), task("load", None, tried=0))
            ),
        }
        watch.show(next_day, noon + dt.timedelta(seconds=60))
        # Its try 1 failed and Airflow retried it between two polls: the failure is said all the same
        # (not of a task that had not started: its first try is no retry).
        next_day["2024-01-11"] = airflow_local.DayRun(
            "running", (task("extract_postgres", "running", noon, tried=2), task("load", "running", noon, tried=1))
        )
        watch.show(next_day, noon + dt.timedelta(seconds=70))
        done = {
            "2024-01-10": airflow_local.DayRun(
                "success", (task("extract_postgres", "success", noon, seconds=9.6), task("load", "success", tried=2))
            ),
            "2024-01-11": airflow_local.DayRun("failed", (task("extract_postgres", "failed", tried=3),)),
        }
        watch.show(done, noon + dt.timedelta(seconds=90))
        assert watch.finished(done) and not watch.finished(retrying)
        assert not watch.activities
    assert out.getvalue().splitlines() == [
        "  northwind_daily 2024-01-10: running",
        "  northwind_daily 2024-01-10 extract_postgres: running",
        "  northwind_daily 2024-01-11: queued",
        "  0 of 2 days done, 1 running, 0 retrying, 0 failed, 1 waiting",
        # Its elapsed time is Airflow's: it had run 3 s when first seen.
        "  still running: 2024-01-10 extract_postgres (8 s) | "
        "0 of 2 days done, 1 running, 0 retrying, 0 failed, 1 waiting",
        "  northwind_daily 2024-01-10: retrying",
        "  northwind_daily 2024-01-10 extract_postgres: success in 10 s",
        "  northwind_daily 2024-01-10 load: failed on try 1, Airflow retries it",
        "  0 of 2 days done, 0 running, 1 retrying, 0 failed, 1 waiting",
        "  still running: 2024-01-10 load, waiting for its retry (5 s) | "
        "0 of 2 days done, 0 running, 1 retrying, 0 failed, 1 waiting",
        "  northwind_daily 2024-01-10 load: success",
        "  northwind_daily 2024-01-10: success",
        "  northwind_daily 2024-01-11: running",
        "  northwind_daily 2024-01-11 extract_postgres: running",
        "  1 of 2 days done, 1 running, 0 retrying, 0 failed, 0 waiting",
        "  northwind_daily 2024-01-11 extract_postgres: failed on try 1, retried",
        "  northwind_daily 2024-01-11 extract_postgres: running (try 2)",
        "  northwind_daily 2024-01-11 load: running",
        "  northwind_daily 2024-01-11 extract_postgres: failed on try 3, no retry left",
        "  northwind_daily 2024-01-11: failed",
        # The last count is printed by wait_for_backfill, with the time the backfill took.
    ]
    assert done["2024-01-11"].failure() == "extract_postgres failed on try 3"
