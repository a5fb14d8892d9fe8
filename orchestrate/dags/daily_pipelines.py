"""The daily pipelines (Northwind, people/places), one DAG each, derived from northwind_elt/pipelines.py.

Each task runs one step's Meltano job through `nw run`, with the day taken from the
run's logical date (`{{ ds }}`), never from the wall clock: a backfill or a catchup
run for 2024-01-15 processes 2024-01-15. `nw run` pins that day for every Meltano task,
records each step in the pipeline's ledger and ends a failed task with the step that
failed and the command to rerun it. The load gate still protects `load` if someone
triggers that task alone.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pendulum
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG

PROJECT_ROOT = Path(os.environ.get("NW_PROJECT_ROOT") or Path(__file__).resolve().parents[2])
# The pipeline definitions are standard-library Python: read them from the checkout
# without installing the project into Airflow's virtualenv.
sys.path.insert(0, str(PROJECT_ROOT))
from northwind_elt.entry.airflow_callbacks import failure_callbacks  # noqa: E402
from northwind_elt.pipelines import PIPELINES  # noqa: E402
from northwind_elt.protocol.definition import DAG_DEFAULT_ARGS  # noqa: E402

NW = os.environ.get("NW_BIN") or str(PROJECT_ROOT / ".venv" / "bin" / "nw")
START_DATE = pendulum.parse(os.environ.get("NW_DAG_START_DATE", "2024-01-01"), tz="UTC")
# With catchup on, unpausing the DAG creates one run for every day since START_DATE.
# Off by default, so unpausing runs only the current day; past days are backfilled.
CATCHUP = os.environ.get("NW_DAG_CATCHUP", "false").lower() in ("1", "true", "yes")


def pipeline_dag(pipeline) -> DAG:
    """One DAG run per day: a task per step, each after the steps it needs."""
    with DAG(
        dag_id=pipeline.dag_id,
        description=pipeline.description,
        schedule=pipeline.schedule,
        start_date=START_DATE,
        catchup=CATCHUP,
        max_active_runs=1,
        default_args={
            **DAG_DEFAULT_ARGS,
            **failure_callbacks(pipeline.name, {step.task_id: step.name for step in pipeline.steps}),
        },
        tags=[pipeline.name, "meltano"],
        doc_md=__doc__,
    ) as dag:
        tasks = {
            step.name: BashOperator(
                task_id=step.task_id,
                # --verbose: Meltano's and dbt's output in the task's log, where operators look.
                bash_command=f"{NW} --date {{{{ ds }}}} run --verbose {step.job}",
                cwd=str(PROJECT_ROOT),
                doc_md=f"`meltano run {step.job}` for the run's logical date, through `nw run`.",
            )
            for step in pipeline.steps
        }
        for step in pipeline.steps:
            for upstream in step.needs:
                tasks[upstream] >> tasks[step.name]
    return dag


for _pipeline in PIPELINES.values():
    globals()[_pipeline.dag_id] = pipeline_dag(_pipeline)
