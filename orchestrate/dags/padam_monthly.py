"""PADAM: one DAG run per logical month - generate the month, prepare the warehouse, export it.

The same three steps as scripts/insert_all_data.sh, for the run's logical month
(`{{ logical_date }}`), never the wall clock: a backfill of 2022 runs January to
December in order (max_active_runs=1, so months never load out of order; if they do,
`nw padam prepare` detects the stale months and reloads them). Every command exits
non-zero with the step and the command to rerun.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pendulum
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG

PROJECT_ROOT = Path(os.environ.get("NW_PROJECT_ROOT") or Path(__file__).resolve().parents[2])
sys.path.insert(0, str(PROJECT_ROOT))  # the standard-library definitions, read from the checkout
from northwind_elt.entry.airflow_callbacks import failure_callbacks  # noqa: E402
from northwind_elt.pipelines import DAG_DEFAULT_ARGS  # noqa: E402

NW = os.environ.get("NW_BIN") or str(PROJECT_ROOT / ".venv" / "bin" / "nw")
START_DATE = pendulum.parse(os.environ.get("NW_PADAM_DAG_START_DATE", "2022-01-01"), tz="UTC")
CATCHUP = os.environ.get("NW_DAG_CATCHUP", "false").lower() in ("1", "true", "yes")
# Not `prepare`: it covers every month and `nw padam prepare` records it under the day it ran,
# which the callback (given the run's month) could not match, so a failure would be recorded twice.
PADAM_STEPS = {"generate": "padam-insert-month", "export": "padam-export"}
MONTH = "{{ logical_date.year }} {{ logical_date.month }}"

with DAG(
    dag_id="padam_monthly",
    description="PADAM entity rows -> warehouse (incremental) -> daily, monthly and yearly stats CSVs",
    schedule="@monthly",
    start_date=START_DATE,
    catchup=CATCHUP,
    max_active_runs=1,
    # An Airflow failure of generate or export is recorded under the month's first day (`{{ ds }}`),
    # the day `nw padam` records them under.
    default_args={**DAG_DEFAULT_ARGS, **failure_callbacks("padam", PADAM_STEPS)},
    tags=["padam", "meltano"],
    doc_md=__doc__,
) as padam_monthly:
    generate = BashOperator(task_id="generate", bash_command=f"{NW} padam insert-month {MONTH}", cwd=str(PROJECT_ROOT))
    prepare = BashOperator(task_id="prepare", bash_command=f"{NW} padam prepare", cwd=str(PROJECT_ROOT))
    export = BashOperator(task_id="export", bash_command=f"{NW} padam export {MONTH}", cwd=str(PROJECT_ROOT))
    generate >> prepare >> export
