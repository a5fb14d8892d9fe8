"""Every pipeline's DAGs, generated from the registry (northwind_elt/pipelines/__init__.py).

Each DAG comes from `Pipeline.dags()`: one for the steps on the pipeline's schedule, one more
for each step with a schedule of its own (ads: the hourly load, the daily archive). A task
per step, after the steps it `needs`; each task runs the step's own `nw` command
(`Pipeline.command`) for the run's logical date (`{{ ds }}`, or its month for a monthly
pipeline), never the wall clock: a backfill or a catchup run for 2024-01-15 processes
2024-01-15, and with max_active_runs=1 (the default) the units run one after another, in order. Day
pipelines run `nw --date {{ ds }} run --verbose <job>`: `nw run` pins the day for every
Meltano task, records each step in the ledger and ends a failed task with the step that
failed and the command to rerun it (`--verbose`: Meltano's and dbt's output in the task's
log, where operators look). The load gate still protects a load triggered alone.

A run's id reaches a command from the task's environment (`$AIRFLOW_CTX_DAG_RUN_ID`), never
templated into the command line, so no character of a (manual) run id reaches the shell; a
retried ads load has the same run id, so it finds its own verified backup in S3 and inserts
it without calling the API again. Nothing is read at import time but the optional settings
below: connections come from the project's .env when a task runs. A failed try that the
step's own command could not record (killed, timed out, never started) goes into the ledger
through the failure callback (`nw airflow record-failure`). Tasks retry twice with a growing
delay.

Scheduled runs: Airflow's `[scheduler] use_job_schedule` (`nw airflow up` sets it from
AIRFLOW_SCHEDULED_RUNS, off by default; docker compose's server keeps Airflow's default, on). While
it is off, each DAG is created paused and stays paused but for a backfill's runs, so Airflow
shows no "Next Run" that would never come (a backfill needs the DAG's schedule, so the schedule
stays). Each DAG's page says how to switch them on.

Settings: NW_DAG_CATCHUP (default false: unpausing runs only the current unit; past ones are
backfilled), each pipeline's start date variable (NW_DAG_START_DATE, NW_PADAM_DAG_START_DATE,
NW_ADS_DAG_START_DATE), NW_DAG_MAX_ACTIVE_RUNS (default 1: units one after another; a
distributed executor runs several), NW_DAG_RETRY_DELAY_SECONDS (default 60, growing), NW_PROJECT_ROOT
and NW_BIN. Airflow 3 style: `schedule`, the standard
provider's BashOperator (whose output lines keep their level: a FAILED line is an error).
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from functools import cached_property
from pathlib import Path

import pendulum
from airflow.providers.standard.hooks.subprocess import SubprocessHook
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG

PROJECT_ROOT = Path(os.environ.get("NW_PROJECT_ROOT") or Path(__file__).resolve().parents[2])
# The pipeline definitions are standard-library Python: read them from the checkout
# without installing the project into Airflow's virtualenv.
sys.path.insert(0, str(PROJECT_ROOT))
from northwind_elt.entry.airflow_callbacks import OutputLevels, failure_callbacks, steps_of_tasks  # noqa: E402
from northwind_elt.pipelines import REGISTRY  # noqa: E402
from northwind_elt.protocol.definition import AIRFLOW_VALUES, DAG_DEFAULT_ARGS, Pipeline, Step  # noqa: E402

NW = os.environ.get("NW_BIN") or str(PROJECT_ROOT / ".venv" / "bin" / "nw")
CATCHUP = os.environ.get("NW_DAG_CATCHUP", "false").lower() in ("1", "true", "yes")
# Days of one day-protocol DAG at once: 1 on one machine, in order; more across the workers of a
# distributed executor (`nw airflow up` sets it there).
MAX_ACTIVE_RUNS = int(os.environ.get("NW_DAG_MAX_ACTIVE_RUNS") or 1)
SCHEDULED_RUNS = os.environ.get("AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE", "true").lower() in ("1", "true", "yes")
DEFAULT_ARGS = dict(DAG_DEFAULT_ARGS)
if os.environ.get("NW_DAG_RETRY_DELAY_SECONDS"):
    DEFAULT_ARGS["retry_delay"] = dt.timedelta(seconds=int(os.environ["NW_DAG_RETRY_DELAY_SECONDS"]))


class LeveledLog:
    """The task's logger, logging each output line at the level the line itself says
    (`OutputLevels`: the project's FAILED/ERROR/Cause/Fix/rerun lines as errors, warnings as warnings)."""

    def __init__(self, log) -> None:
        self._log = log
        self._levels = OutputLevels()

    def info(self, message: str, *args, **kwargs) -> None:
        line = str(args[0]) if message == "%s" and args else message
        getattr(self._log, self._levels.level(line))(message, *args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self._log, name)


class NwHook(SubprocessHook):
    """Airflow's subprocess hook, whose output lines keep their level in the task log."""

    @cached_property
    def _leveled_log(self) -> LeveledLog:
        return LeveledLog(super().log)  # one for the command's whole output: a report spans lines

    @property
    def log(self):
        return self._leveled_log


class NwOperator(BashOperator):
    """The standard BashOperator running an `nw` command, its ERROR/FAILED lines logged as errors."""

    @cached_property
    def subprocess_hook(self) -> SubprocessHook:
        return NwHook()


def task_doc(pipeline: Pipeline, step: Step) -> str:
    if step.is_protocol:
        return f"`meltano run {step.job}` for the run's logical date, through `nw run`."
    return f"{step.description or step.name}: `nw {pipeline.command(step.name)}`."


def schedule_doc(dag_id: str, schedule: str, scheduled_runs: bool) -> str:
    """What the DAG's page says about its schedule: whether it runs on it, and how to change that."""
    if scheduled_runs:
        return (
            f"**Scheduled runs are on**: once unpaused, {dag_id} runs on its schedule (`{schedule}`). "
            "For a local Airflow, AIRFLOW_SCHEDULED_RUNS=false in .env (then restart `nw airflow up`) turns them off."
        )
    return (
        f"**Scheduled runs are off** (AIRFLOW_SCHEDULED_RUNS=false): {dag_id} runs only what is triggered or "
        f"backfilled, and stays paused otherwise, so no next run is shown (`nw airflow backfill` unpauses it "
        f"for the backfill's runs and, with --wait, pauses it again once they have ended). To run it on its "
        f"schedule (`{schedule}`): set AIRFLOW_SCHEDULED_RUNS=true in .env, restart `nw airflow up` "
        "(make airflow), then unpause the DAG."
    )


def dag_doc(pipeline: Pipeline, dag_id: str, schedule: str, description: str, steps: tuple[Step, ...]) -> str:
    lines = [f"- `{step.task_id}`: `nw {pipeline.command(step.name)}` {step.description}".rstrip() for step in steps]
    head = [__doc__, f"## {dag_id}", "", f"{pipeline.name}, by {pipeline.unit}: {description}", ""]
    return "\n".join([*head, schedule_doc(dag_id, schedule, SCHEDULED_RUNS), "", *lines])


def pipeline_dag(pipeline: Pipeline, dag_id: str, schedule: str, steps: tuple[Step, ...]) -> DAG:
    """One DAG: a task per step, each after the steps it needs (all in this DAG)."""
    in_dag = {step.name for step in steps}
    for step in steps:
        if elsewhere := [need for need in step.needs if need not in in_dag]:
            raise ValueError(
                f"pipeline {pipeline.name}: step {step.name} of DAG {dag_id} needs {', '.join(elsewhere)}, which "
                "runs in another DAG (a step with a schedule of its own): give them the same schedule"
            )
    # A DAG of its own step (ads) says what that step does; the pipeline's DAG what the pipeline does.
    description = steps[0].description if steps[0].schedule and steps[0].description else pipeline.description
    start = os.environ.get(pipeline.start_date_env) or pipeline.start_date
    recorded = steps_of_tasks(pipeline, steps)
    callbacks = failure_callbacks(pipeline.name, recorded)
    with DAG(
        dag_id=dag_id,
        description=description,
        schedule=schedule,
        start_date=pendulum.parse(start, tz="UTC"),
        catchup=CATCHUP,
        # Days of a day-protocol pipeline are independent units; a month of PADAM follows the
        # bookmark of the one before, and ads' runs stay one at a time.
        max_active_runs=MAX_ACTIVE_RUNS if pipeline.runs_by_day else 1,
        default_args=dict(DEFAULT_ARGS),
        tags=[pipeline.name, "meltano"],
        doc_md=dag_doc(pipeline, dag_id, schedule, description, steps),
        # Paused unless scheduled runs are on: an unpaused DAG shows a next run that would never come.
        is_paused_upon_creation=None if SCHEDULED_RUNS else True,
    ) as dag:
        tasks = {
            step.name: NwOperator(
                task_id=step.task_id,
                bash_command=f"{NW} {pipeline.command(step.name).format(**AIRFLOW_VALUES)}",
                cwd=str(PROJECT_ROOT),
                doc_md=task_doc(pipeline, step),
                # A step that rebuilds the pipeline's shared models (dbt) runs for one day at a
                # time, whichever worker takes it: Airflow queues the others instead of failing them.
                **({"max_active_tis_per_dag": 1} if step.serial_across_units else {}),
                # Only a step whose ledger entry the run's unit names (not PADAM's prepare).
                **(callbacks if step.task_id in recorded else {}),
            )
            for step in steps
        }
        for step in steps:
            for upstream in step.needs:
                tasks[upstream] >> tasks[step.name]
    return dag


for _pipeline in REGISTRY.values():
    for _dag_id, _schedule, _steps in _pipeline.dags():
        globals()[_dag_id] = pipeline_dag(_pipeline, _dag_id, _schedule, _steps)
