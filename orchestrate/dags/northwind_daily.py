"""Northwind daily pipeline, one DAG run per day.

Each task runs the matching Meltano job through `nw run`, with the day taken from the
run's logical date (`{{ ds }}`), never from the wall clock: a backfill or a catchup
run for 2024-01-15 processes 2024-01-15. `nw run` records each step in the pipeline's
ledger and ends a failed task with the step that failed and the command to rerun it.
The load gate inside the pipeline still protects `load` if someone triggers it alone.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pendulum
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG

PROJECT_ROOT = Path(os.environ.get("NW_PROJECT_ROOT") or Path(__file__).resolve().parents[2])
NW = os.environ.get("NW_BIN") or str(PROJECT_ROOT / ".venv" / "bin" / "nw")
START_DATE = pendulum.parse(os.environ.get("NW_DAG_START_DATE", "2024-01-01"), tz="UTC")
# With catchup on, unpausing the DAG creates one run for every day since START_DATE.
# Off by default, so unpausing runs only the current day; past days are backfilled.
CATCHUP = os.environ.get("NW_DAG_CATCHUP", "false").lower() in ("1", "true", "yes")

default_args = {
    "owner": "northwind-elt",
    "retries": 2,
    "retry_delay": dt.timedelta(minutes=1),
    "retry_exponential_backoff": True,
    "max_retry_delay": dt.timedelta(minutes=15),
}


def meltano_job(job: str) -> BashOperator:
    return BashOperator(
        task_id=job.replace("-", "_"),
        bash_command=f"{NW} --date {{{{ ds }}}} run {job}",
        cwd=str(PROJECT_ROOT),
        doc_md=f"`meltano run {job}` for the run's logical date.",
    )


with DAG(
    dag_id="northwind_daily",
    description="Extract Northwind (Postgres + CSV) to Parquet, load to analytics, dbt build, export",
    schedule="@daily",
    start_date=START_DATE,
    catchup=CATCHUP,
    max_active_runs=1,
    default_args=default_args,
    tags=["northwind", "meltano"],
    doc_md=__doc__,
) as dag:
    extract_postgres = meltano_job("extract-postgres")
    extract_csv = meltano_job("extract-csv")
    load = meltano_job("load")
    transform = meltano_job("transform")
    export = meltano_job("export")

    [extract_postgres, extract_csv] >> load >> transform >> export
