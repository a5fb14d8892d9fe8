"""The DAGs' failure callback (standard library only: Airflow's virtualenv does not install the project).

A failed try that `nw run` (or `nw padam`, `nw ads`) could not record — killed, timed out, never started
because Airflow's task API did not answer — goes into the pipeline's ledger through
`nw airflow record-failure`, so `nw status` shows it. The callback runs in the task's process,
or in the dag processor when the task never ran.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from northwind_elt.protocol.definition import Pipeline, Step

PROJECT_ROOT = Path(os.environ.get("NW_PROJECT_ROOT") or Path(__file__).resolve().parents[2])
NW = os.environ.get("NW_BIN") or str(PROJECT_ROOT / ".venv" / "bin" / "nw")


def failure_recorder(pipeline: str, step_of_task: Mapping[str, str]) -> Callable[[dict], None]:
    """A callback recording a failed try of a task (task id -> ledger step) of `pipeline` on the run's day."""

    def record(context: dict) -> None:
        ti = context["ti"]
        step = step_of_task.get(ti.task_id)
        if step is None:
            return
        where = f"DAG {ti.dag_id}, run {context.get('run_id')}, task {ti.task_id}, try {ti.try_number}"
        reason = str(context.get("exception") or "the task failed")[:2000]
        since = ["--since", ti.start_date.isoformat()] if getattr(ti, "start_date", None) else []
        command = [NW, "airflow", "record-failure", pipeline, step, context["ds"], "--reason", reason]
        subprocess.run([*command, "--where", where, *since], cwd=str(PROJECT_ROOT), timeout=120, check=False)

    return record


def failure_callbacks(pipeline: str, step_of_task: Mapping[str, str]) -> dict:
    """default_args entries: record a failed try, and a try that will be retried, in the ledger."""
    record = failure_recorder(pipeline, step_of_task)
    return {"on_failure_callback": record, "on_retry_callback": record}


def steps_of_tasks(pipeline: Pipeline, steps: Iterable[Step]) -> dict[str, str]:
    """Task id -> ledger step, for the steps whose failures the callback can record under the run's
    unit: not a step that takes no unit (PADAM's prepare, which records itself), whose
    Airflow failure would otherwise be recorded a second time, under another key."""
    return {step.task_id: step.name for step in steps if pipeline.runs_for_one_unit(step.name)}
