"""Ads: the hourly load (API -> S3 backup -> api_ad_data) and the daily archive of old rows.

Both tasks run the project's entry point, `nw ads ...`, for the run's logical date
(`{{ ds }}`, never the wall clock), and pass Airflow's run id: a retried load task has the
same run id, so it finds its own verified backup in S3 and inserts it without calling the
API again. Nothing is read from the environment at import time but optional settings;
connections, S3 and the API come from the project's .env when the task runs.

Airflow 3 style (shared/specs/ads-api.md §3): `schedule`, not `schedule_interval`; the
standard provider's BashOperator, no `python_operator` and no `PostgresOperator`.
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
from northwind_elt.pipelines import DAG_DEFAULT_ARGS  # noqa: E402

NW = os.environ.get("NW_BIN") or str(PROJECT_ROOT / ".venv" / "bin" / "nw")
START_DATE = pendulum.parse(os.environ.get("NW_ADS_DAG_START_DATE", "2024-01-01"), tz="UTC")
CATCHUP = os.environ.get("NW_DAG_CATCHUP", "false").lower() in ("1", "true", "yes")
# Airflow exports the run id to the task's environment: read it there, not templated into the
# command line, so no character of a (manual) run id can reach the shell.
RUN = '--date {{ ds }} --run-id "$AIRFLOW_CTX_DAG_RUN_ID"'


def ads_dag(dag_id: str, description: str, schedule: str, command: str) -> DAG:
    """One DAG whose single task runs `nw ads <command>` for the run's day and run id."""
    with DAG(
        dag_id=dag_id,
        description=description,
        schedule=schedule,
        start_date=START_DATE,
        catchup=CATCHUP,
        max_active_runs=1,
        default_args=DAG_DEFAULT_ARGS,
        tags=["ads", "meltano"],
        doc_md=__doc__,
    ) as dag:
        BashOperator(task_id=command, bash_command=f"{NW} ads {command} {RUN}", cwd=str(PROJECT_ROOT))
    return dag


ads_api_load = ads_dag(
    "ads_api_load",
    "ads API -> s3://ad-data/backup/<day>/<run id>.jsonl (verified) -> api_ad_data",
    "12 * * * *",  # hourly at minute 12, like the original
    "load",
)
ads_archive = ads_dag(
    "ads_archive",
    "api_ad_data rows older than ADS_RETENTION_HOURS -> s3://ad-data/archive/, then deleted",
    "@daily",
    "archive",
)
