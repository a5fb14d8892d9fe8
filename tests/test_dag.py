"""The Airflow DAG: its shape, its templated day, and a real `airflow dags test` run."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from support import PROJECT, Pipeline

AIRFLOW_BIN = PROJECT / ".venv-airflow" / "bin"
DAGS = PROJECT / "orchestrate" / "dags"
JOBS = {
    "extract_postgres": "extract-postgres",
    "extract_csv": "extract-csv",
    "load": "load",
    "transform": "transform",
    "export": "export",
    "people_extract": "people-extract",
    "people_load": "people-load",
    "people_transform": "people-transform",
    "people_export": "people-export",
}


def airflow_env(pipeline: Pipeline, home: Path) -> dict[str, str]:
    return {
        **pipeline.env,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "NW_PROJECT_ROOT": str(PROJECT),
    }


@pytest.fixture(scope="module")
def airflow_home(pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("airflow")
    result = subprocess.run(
        [AIRFLOW_BIN / "airflow", "db", "migrate"],
        env=airflow_env(pipeline, home),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return home


def describe_dag(pipeline: Pipeline, airflow_home: Path, **extra_env: str) -> dict:
    result = subprocess.run(
        [AIRFLOW_BIN / "python", PROJECT / "tests" / "dag_probe.py", str(DAGS)],
        env={**airflow_env(pipeline, airflow_home), **extra_env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def dag_description(pipeline: Pipeline, airflow_home: Path) -> dict:
    return describe_dag(pipeline, airflow_home)


def test_dag_imports_without_errors(dag_description: dict) -> None:
    assert dag_description["import_errors"] == {}
    assert sorted(dag_description["dags"]) == [
        "ads_api_load",
        "ads_archive",
        "northwind_daily",
        "padam_monthly",
        "people_daily",
    ]


def test_catchup_is_opt_in(pipeline: Pipeline, airflow_home: Path, dag_description: dict) -> None:
    assert {d["catchup"] for d in dag_description["dags"].values()} == {False}
    assert {d["catchup"] for d in describe_dag(pipeline, airflow_home, NW_DAG_CATCHUP="true")["dags"].values()} == {
        True
    }


def test_people_dag_is_a_chain_of_its_steps(dag_description: dict) -> None:
    upstream = {task: info["upstream"] for task, info in dag_description["dags"]["people_daily"]["tasks"].items()}
    assert upstream == {
        "people_extract": [],
        "people_load": ["people_extract"],
        "people_transform": ["people_load"],
        "people_export": ["people_transform"],
    }


def test_task_graph_is_two_parallel_extracts_then_load_transform_export(dag_description: dict) -> None:
    upstream = {task: info["upstream"] for task, info in dag_description["dags"]["northwind_daily"]["tasks"].items()}
    assert upstream == {
        "extract_postgres": [],
        "extract_csv": [],
        "load": ["extract_csv", "extract_postgres"],
        "transform": ["load"],
        "export": ["transform"],
    }


def test_every_task_runs_its_meltano_job_for_the_logical_date_with_retries(dag_description: dict) -> None:
    daily = {name: dag for name, dag in dag_description["dags"].items() if name.endswith("_daily")}
    tasks = {t: i for dag in daily.values() for t, i in dag["tasks"].items()}
    assert set(tasks) == set(JOBS)
    for task, info in tasks.items():
        assert info["bash_command"].endswith(f"--date {{{{ ds }}}} run --verbose {JOBS[task]}"), info["bash_command"]
        assert info["retries"] >= 1 and info["exponential_backoff"] is True


def test_padam_dag_runs_generate_prepare_export_for_the_logical_month(dag_description: dict) -> None:
    dag = dag_description["dags"]["padam_monthly"]
    assert "monthly" in dag["schedule"].lower() or "0 0 1 * *" in dag["schedule"]
    tasks = dag["tasks"]
    assert {t: i["upstream"] for t, i in tasks.items()} == {
        "generate": [],
        "prepare": ["generate"],
        "export": ["prepare"],
    }
    month = "{{ logical_date.year }} {{ logical_date.month }}"
    assert tasks["generate"]["bash_command"].endswith(f"padam insert-month {month}")
    assert tasks["prepare"]["bash_command"].endswith("padam prepare")
    assert tasks["export"]["bash_command"].endswith(f"padam export {month}")
    assert all(i["retries"] >= 1 for i in tasks.values())


def test_ads_dags_run_the_entry_point_for_the_logical_date_with_airflows_run_id(dag_description: dict) -> None:
    load, archive = dag_description["dags"]["ads_api_load"], dag_description["dags"]["ads_archive"]
    assert load["schedule"] == "At 12 minutes past the hour" or "12 * * * *" in load["schedule"], load["schedule"]
    assert "daily" in archive["schedule"].lower() or "0 0 * * *" in archive["schedule"], archive["schedule"]
    run = '--date {{ ds }} --run-id "$AIRFLOW_CTX_DAG_RUN_ID"'
    assert load["tasks"]["load"]["bash_command"].endswith(f"ads load {run}")
    assert archive["tasks"]["archive"]["bash_command"].endswith(f"ads archive {run}")
    assert load["tasks"]["load"]["retries"] >= 1 and archive["tasks"]["archive"]["retries"] >= 1


def test_airflow_dags_test_produces_the_days_export(pipeline: Pipeline, airflow_home: Path) -> None:
    # One real Airflow run of the DAG (its tasks call nw run with the logical date). That a
    # rerun gives byte-identical exports is tested in test_pipeline, through the same nw run.
    day = "2024-01-20"
    for suffix in ("csv", "json"):  # the run must write its own export
        pipeline.output(day, suffix).unlink(missing_ok=True)
    result = subprocess.run(
        [AIRFLOW_BIN / "airflow", "dags", "test", "northwind_daily", day],
        env=airflow_env(pipeline, airflow_home),
        capture_output=True,
        text=True,
        timeout=1200,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    assert pipeline.output(day, "csv").exists() and pipeline.output(day, "json").exists(), output[-3000:]
    assert sum(1 for _ in pipeline.output(day, "csv").open()) == 2156
    assert len(json.loads(pipeline.output(day, "json").read_text())) == 2155
