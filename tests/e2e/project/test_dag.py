"""The Airflow DAGs, generated from the registry: their shape, their templated day, and a real Airflow on
AIRFLOW_PORT running a backfill."""

from __future__ import annotations

import datetime as dt
import json
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import NW, PROJECT, Pipeline, free_port, wait_for

from northwind_elt.core.net import answers, port_taken
from northwind_elt.pipelines import REGISTRY
from northwind_elt.protocol.definition import AIRFLOW_VALUES

AIRFLOW_BIN = PROJECT / ".venv-airflow" / "bin"
DAGS = PROJECT / "orchestrate" / "dags"
GENERATOR = DAGS / "pipelines.py"
# (pipeline, dag id, schedule, steps) of every DAG the registry defines.
REGISTERED = [(p, dag_id, schedule, steps) for p in REGISTRY.values() for dag_id, schedule, steps in p.dags()]
# Distinct start dates for every pipeline's variable, to see each DAG take its own.
START_DATES = {p.start_date_env: f"2023-01-{n:02d}" for n, p in enumerate(REGISTRY.values(), 1)}
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


@pytest.fixture(scope="module")
def dag_description_with_settings(pipeline: Pipeline, airflow_home: Path) -> dict:
    """The DAGs as the optional settings make them: catchup on, each pipeline's own start date, days
    side by side, a shorter first retry; and as `nw airflow up` makes them by default: scheduled runs off."""
    return describe_dag(
        pipeline,
        airflow_home,
        AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE="False",
        NW_DAG_CATCHUP="true",
        NW_DAG_MAX_ACTIVE_RUNS="3",
        NW_DAG_RETRY_DELAY_SECONDS="7",
        **START_DATES,
    )


def test_dag_imports_without_errors(dag_description: dict) -> None:
    assert dag_description["import_errors"] == {}
    assert sorted(dag_description["dags"]) == [
        "ads_api_load",
        "ads_archive",
        "northwind_daily",
        "padam_monthly",
        "people_daily",
    ]


def test_every_registered_pipeline_has_its_dags_from_the_one_generator(dag_description: dict) -> None:
    assert [path.name for path in DAGS.glob("*.py")] == [GENERATOR.name]
    dags = dag_description["dags"]
    assert sorted(dags) == sorted(dag_id for _, dag_id, _, _ in REGISTERED)
    for pipeline, dag_id, _, steps in REGISTERED:
        dag = dags[dag_id]
        assert dag["fileloc"] == str(GENERATOR)
        assert sorted(dag["tasks"]) == sorted(step.task_id for step in steps), dag_id
        assert dag["tags"] == sorted([pipeline.name, "meltano"]) and dag["max_active_runs"] == 1, dag_id
        # One doc per DAG: the generator's docstring, then what this DAG does and each task's command.
        own = steps[0].description if steps[0].schedule else ""
        assert dag["description"] == (own or pipeline.description), dag_id
        assert dag["doc_md"].startswith("Every pipeline's DAGs, generated from the registry"), dag_id
        assert f"## {dag_id}" in dag["doc_md"] and dag["description"] in dag["doc_md"], dag_id
        for step in steps:
            assert f"`{step.task_id}`: `nw {pipeline.command(step.name)}`" in dag["doc_md"], dag_id


def test_days_run_one_at_a_time_unless_set_and_a_transform_one_day_at_a_time_always(
    dag_description: dict, dag_description_with_settings: dict
) -> None:
    # NW_DAG_MAX_ACTIVE_RUNS (the distributed mode's days side by side) binds only the day-protocol
    # DAGs: a PADAM month follows the one before, ads' runs stay one at a time.
    for pipeline, dag_id, _, steps in REGISTERED:
        runs_at_once = dag_description_with_settings["dags"][dag_id]["max_active_runs"]
        assert runs_at_once == (3 if pipeline.runs_by_day else 1), dag_id
        for described in (dag_description, dag_description_with_settings):
            tasks = described["dags"][dag_id]["tasks"]
            for step in steps:
                # dbt rebuilds the pipeline's shared views and candidate tables, whatever the day.
                expected = 1 if step.kind == "transform" else None
                assert tasks[step.task_id]["max_active_tis_per_dag"] == expected, (dag_id, step.name)
    transforms = [s for _, _, _, steps in REGISTERED for s in steps if s.kind == "transform"]
    assert {s.name for s in transforms} == {"transform", "people-transform"}
    assert dag_description["dags"]["northwind_daily"]["tasks"]["load"]["retry_delay_s"] == 60
    assert dag_description_with_settings["dags"]["northwind_daily"]["tasks"]["load"]["retry_delay_s"] == 7


def test_a_dag_promises_no_next_run_while_scheduled_runs_are_off_and_says_how_to_turn_them_on(
    dag_description: dict, dag_description_with_settings: dict
) -> None:
    # Off (`nw airflow up`'s default): created paused, and an unpaused DAG is paused again after its
    # backfill (test_airflow_on_port_8091_...), so Airflow's UI shows no "Next Run". On (compose's
    # server, Airflow's default): Airflow's own setting (dags_are_paused_at_creation) decides.
    for _, dag_id, schedule, _ in REGISTERED:
        off, on = dag_description_with_settings["dags"][dag_id], dag_description["dags"][dag_id]
        assert off["is_paused_upon_creation"] is True and on["is_paused_upon_creation"] is None, dag_id
        assert "**Scheduled runs are off** (AIRFLOW_SCHEDULED_RUNS=false)" in off["doc_md"], dag_id
        assert f"To run it on its schedule (`{schedule}`): set AIRFLOW_SCHEDULED_RUNS=true in .env" in off["doc_md"]
        assert "**Scheduled runs are on**" in on["doc_md"] and "Scheduled runs are off" not in on["doc_md"], dag_id


def test_catchup_is_opt_in(dag_description: dict, dag_description_with_settings: dict) -> None:
    assert {d["catchup"] for d in dag_description["dags"].values()} == {False}
    assert {d["catchup"] for d in dag_description_with_settings["dags"].values()} == {True}


def test_each_dag_starts_on_its_pipelines_start_date_or_its_variable(
    dag_description: dict, dag_description_with_settings: dict
) -> None:
    for pipeline, dag_id, _, _ in REGISTERED:
        assert dag_description["dags"][dag_id]["start_date"][:10] == pipeline.start_date, dag_id
        started = dag_description_with_settings["dags"][dag_id]["start_date"]
        assert started[:10] == START_DATES[pipeline.start_date_env], dag_id
    assert dag_description["dags"]["padam_monthly"]["start_date"] == "2022-01-01T00:00:00+00:00"
    assert dag_description["dags"]["northwind_daily"]["start_date"] == "2024-01-01T00:00:00+00:00"
    assert {p.start_date_env for p, _, _, _ in REGISTERED} == {
        "NW_DAG_START_DATE",
        "NW_PADAM_DAG_START_DATE",
        "NW_ADS_DAG_START_DATE",
    }


def test_tasks_run_after_the_steps_they_need(dag_description: dict) -> None:
    for _, dag_id, _, steps in REGISTERED:
        task_of = {step.name: step.task_id for step in steps}
        upstream = {task: info["upstream"] for task, info in dag_description["dags"][dag_id]["tasks"].items()}
        assert upstream == {step.task_id: sorted(task_of[need] for need in step.needs) for step in steps}, dag_id


def test_every_task_runs_its_steps_command_from_the_definition(dag_description: dict) -> None:
    for pipeline, dag_id, _, steps in REGISTERED:
        tasks = dag_description["dags"][dag_id]["tasks"]
        for step in steps:
            task = tasks[step.task_id]
            assert task["bash_command"] == f"{NW} {pipeline.command(step.name).format(**AIRFLOW_VALUES)}"
            assert task["cwd"] == str(PROJECT) and task["owner"] == "northwind-elt"
            assert task["retries"] >= 1 and task["exponential_backoff"] is True
            # A run id comes from the task's environment, never templated into the shell's command line.
            assert "run_id" not in task["bash_command"], task["bash_command"]
            assert task["records_failures"] == pipeline.runs_for_one_unit(step.name), (dag_id, step.name)


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
        assert info["records_failures"], f"{task}: an Airflow failure would not reach the ledger"


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
    assert tasks["generate"]["records_failures"] and tasks["export"]["records_failures"]
    assert not tasks["prepare"]["records_failures"]  # every month, recorded under the day it ran


def test_ads_dags_run_the_entry_point_for_the_logical_date_with_airflows_run_id(dag_description: dict) -> None:
    load, archive = dag_description["dags"]["ads_api_load"], dag_description["dags"]["ads_archive"]
    assert load["schedule"] == "At 12 minutes past the hour" or "12 * * * *" in load["schedule"], load["schedule"]
    assert "daily" in archive["schedule"].lower() or "0 0 * * *" in archive["schedule"], archive["schedule"]
    run = '--date {{ ds }} --run-id "$AIRFLOW_CTX_DAG_RUN_ID"'
    assert load["tasks"]["load"]["bash_command"].endswith(f"ads load {run}")
    assert archive["tasks"]["archive"]["bash_command"].endswith(f"ads archive {run}")
    assert load["tasks"]["load"]["retries"] >= 1 and archive["tasks"]["archive"]["retries"] >= 1
    assert load["tasks"]["load"]["records_failures"] and archive["tasks"]["archive"]["records_failures"]


@pytest.fixture(scope="module")
def local_airflow(pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A real Airflow (API server, scheduler, dag processor, triggerer) started by `nw airflow up` on
    AIRFLOW_PORT, scheduled runs off (the default). The people warehouse's port is closed, so
    people_daily fails (northwind_daily does not use it), and a failed try is retried after 1 s."""
    port = free_port() if port_taken(8091) else 8091
    env = {
        "AIRFLOW_PORT": str(port),
        "AIRFLOW_HOME": str(tmp_path_factory.mktemp("local-airflow") / "airflow"),
        "NW_DAG_RETRY_DELAY_SECONDS": "1",
        "PEOPLE_PG_PORT": str(free_port()),
    }
    pipeline.migrate_meltano_database()  # the day's two extracts start side by side
    up = pipeline.start("airflow", "up", extra_env=env)
    try:
        wait_for(lambda: answers(f"http://127.0.0.1:{port}/execution/health"), "Airflow's task API", proc=up)
        yield env
    finally:
        up.send_signal(signal.SIGINT)
        stopped = up.communicate(timeout=120)[0]
    assert up.returncode == 0 and "Airflow stopped" in stopped, stopped[-3000:]
    assert "LocalExecutor (" in stopped and "task slots on" in stopped, stopped[-3000:]


def airflow_json(pipeline: Pipeline, env: dict[str, str], *args: str) -> list[dict]:
    """What Airflow's own CLI says (its metadata database), as JSON."""
    result = subprocess.run(
        [AIRFLOW_BIN / "airflow", *args, "-o", "json"],
        env={**airflow_env(pipeline, Path(env["AIRFLOW_HOME"])), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(next(line for line in result.stdout.splitlines() if line.startswith("[")))


def test_airflow_on_port_8091_backfills_exactly_the_range_asked_for_one_day_after_another(
    pipeline: Pipeline, local_airflow: dict[str, str]
) -> None:
    # A backfill of two days runs those days' DAG runs, and nothing else, one day after the other
    # (the DAG's max_active_runs=1), and shows its progress while it waits.
    days = ["2024-01-20", "2024-01-21"]
    for day in days:
        for suffix in ("csv", "json"):  # each run must write its own export
            pipeline.output(day, suffix).unlink(missing_ok=True)
    backfill = pipeline.nw(
        "airflow", "backfill", "--from", days[0], "--to", days[-1], "--wait", extra_env=local_airflow, timeout=2400
    )
    output = backfill.stdout + backfill.stderr
    print(output)  # what a user sees (pytest -rP shows it)
    assert backfill.returncode == 0, output[-5000:]
    assert "(2 days), one day after another, in order (max_active_runs 1: NW_DAG_MAX_ACTIVE_RUNS)" in output
    for day in days:
        assert f"northwind_daily {day}: success" in output, output
        assert f"northwind_daily {day} export: success in " in output, output
    assert "2 of 2 days done, 0 running, 0 retrying, 0 failed, 0 waiting after " in output, output
    # Scheduled runs are off: the DAG is paused again, so Airflow shows no next run.
    assert "northwind_daily paused again" in output, output
    assert str(airflow_json(pipeline, local_airflow, "dags", "details", "northwind_daily")[0]["is_paused"]) == "True"

    listed = airflow_json(pipeline, local_airflow, "dags", "list-runs", "northwind_daily")
    assert sorted(r["logical_date"][:10] for r in listed) == days, listed  # no run for today
    # Never two days at once, by Airflow's own record: the first day's run and every task of it had
    # ended before the second day's run and any task of it started.
    first, second = sorted(listed, key=lambda r: r["logical_date"])
    tasks = {
        run["logical_date"][:10]: airflow_json(
            pipeline, local_airflow, "tasks", "states-for-dag-run", "northwind_daily", run["run_id"]
        )
        for run in (first, second)
    }
    assert all(t["state"] == "success" for day in days for t in tasks[day]), tasks
    when = dt.datetime.fromisoformat
    assert when(first["end_date"]) <= when(second["start_date"]), (first, second)
    first_ended = max(when(t["end_date"]) for t in tasks[days[0]])
    second_started = min(when(t["start_date"]) for t in tasks[days[1]])
    assert first_ended <= second_started, tasks

    # What made Airflow retry a try, if it had to (shown with -rP): the try's error records.
    logs = Path(local_airflow["AIRFLOW_HOME"]) / "logs" / "dag_id=northwind_daily"
    for attempt in sorted(logs.glob("run_id=*/task_id=*/attempt=*.log")):
        errors = [json.loads(line)["event"] for line in attempt.read_text().splitlines() if '"level":"error"' in line]
        if errors:
            print(attempt.relative_to(logs), *errors[-12:], sep="\n  ")
    for day in days:
        assert sum(1 for _ in pipeline.output(day, "csv").open()) == 2156
        assert len(json.loads(pipeline.output(day, "json").read_text())) == 2155
        status = pipeline.status(day)
        assert all(re.search(rf"^{step}\s+success", status, re.M) for step in JOBS.values() if "people" not in step)


def test_a_failed_tasks_report_is_at_error_level_in_airflows_task_log(
    pipeline: Pipeline, local_airflow: dict[str, str]
) -> None:
    # people_daily cannot reach its warehouse (the local_airflow fixture): a task fails, Airflow
    # retries it, and the backfill ends with the day failed.
    day = "2024-01-20"
    backfill = pipeline.nw(
        "airflow",
        "backfill",
        "--dag",
        "people_daily",
        "--from",
        day,
        "--to",
        day,
        "--wait",
        extra_env=local_airflow,
        timeout=2400,
    )
    output = backfill.stdout + backfill.stderr
    print(output)  # what a user sees (pytest -rP shows it)
    assert backfill.returncode == 1, output[-5000:]
    assert f"people_daily {day}: failed" in output and "0 of 1 day done" in output, output
    assert f"FAILED days: {day} (people_" in output and "failed on try 3)" in output, output
    assert f"Then rerun: nw airflow backfill --dag people_daily --from {day} --to {day} --wait" in output, output

    (run,) = airflow_json(pipeline, local_airflow, "dags", "list-runs", "people_daily")
    states = airflow_json(pipeline, local_airflow, "tasks", "states-for-dag-run", "people_daily", run["run_id"])
    (failed,) = [t["task_id"] for t in states if t["state"] == "failed"]
    task_dir = Path(local_airflow["AIRFLOW_HOME"]) / "logs" / "dag_id=people_daily" / f"run_id={run['run_id']}"
    tries = sorted((task_dir / f"task_id={failed}").glob("attempt=*.log"))
    assert len(tries) == 3, tries  # the first try and Airflow's two retries
    # Each try's log: Airflow's JSON records, one per line, each with its level.
    records = [json.loads(line) for line in tries[-1].read_text().splitlines() if line.startswith("{")]
    report = ("FAILED: ", "ERROR: ", "Cause: ", "Fix the cause, then rerun: ", "Then rerun: ")
    reported = [r for r in records if str(r.get("event", "")).startswith(report)]
    assert any(r["event"].startswith(("FAILED: step ", "ERROR: ")) for r in reported), records[-40:]
    assert {r["level"] for r in reported} == {"error"}, [(r["level"], r["event"]) for r in reported]


LEVELS_PROBE = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("generated_dags", sys.argv[1])
dags = importlib.util.module_from_spec(spec)
spec.loader.exec_module(dags)
seen = []
class Recorder:
    def __getattr__(self, level):
        return lambda message, *args, **kwargs: seen.append([level, args[0] if args else message])
log = dags.LeveledLog(Recorder())
for line in json.loads(sys.argv[2]):
    log.info("%s", line)
hook_log = type(dags.northwind_daily.get_task("load").subprocess_hook.log).__name__
print(json.dumps({"seen": seen, "hook_log": hook_log}))
"""


def test_a_tasks_failure_lines_reach_airflows_log_as_errors_not_info(pipeline: Pipeline, airflow_home: Path) -> None:
    # What `nw run` prints when a step fails, as the task's subprocess hook logs it line by line.
    lines = [
        "northwind  load              2024-01-15             4.1  failed",
        "FAILED: step 'load' for 2024-01-15 (meltano run load exited 1).",
        "Cause: load refused for 2024-01-15: extract-csv did not complete",
        "Fix the cause, then rerun: nw run --date 2024-01-15 --from extract-csv",
        "WARNING: 1 dbt test warned",
        "2026-12-06T20:00:00.000000Z [error    ] meltano      Block run completed with errors",
    ]
    result = subprocess.run(
        [AIRFLOW_BIN / "python", "-c", LEVELS_PROBE, str(GENERATOR), json.dumps(lines)],
        env=airflow_env(pipeline, airflow_home),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    assert probe["hook_log"] == "LeveledLog"  # every task's hook logs through it
    assert [level for level, _ in probe["seen"]] == ["info", "error", "error", "error", "warning", "error"]
    assert [line for _, line in probe["seen"]] == lines
