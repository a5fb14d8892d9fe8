"""Run with the Airflow virtualenv's Python: load the DAG folder and describe it as JSON."""

from __future__ import annotations

import json
import sys

from airflow.models.dagbag import DagBag

bag = DagBag(dag_folder=sys.argv[1])
print(
    json.dumps(
        {
            "import_errors": {k: str(v) for k, v in bag.import_errors.items()},
            "dags": {
                dag_id: {
                    "fileloc": dag.fileloc,
                    "catchup": dag.catchup,
                    "schedule": str(getattr(dag.timetable, "description", dag.timetable)),
                    "start_date": dag.start_date.isoformat(),
                    "max_active_runs": dag.max_active_runs,
                    "description": dag.description,
                    "doc_md": dag.doc_md,
                    "is_paused_upon_creation": dag.is_paused_upon_creation,
                    "tags": sorted(dag.tags),
                    "tasks": {
                        task.task_id: {
                            "upstream": sorted(task.upstream_task_ids),
                            "bash_command": task.bash_command,
                            "cwd": task.cwd,
                            "retries": task.retries,
                            "retry_delay_s": task.retry_delay.total_seconds(),
                            "max_active_tis_per_dag": task.max_active_tis_per_dag,
                            "exponential_backoff": task.retry_exponential_backoff,
                            "owner": task.owner,
                            "records_failures": bool(task.on_failure_callback and task.on_retry_callback),
                        }
                        for task in dag.tasks
                    },
                }
                for dag_id, dag in bag.dags.items()
            },
        }
    )
)
