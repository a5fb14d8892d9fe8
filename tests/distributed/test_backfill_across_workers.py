"""Airflow's distributed mode: a backfill of 4 days of Northwind and of people, spread over two
workers (EdgeExecutor), one of which dies (SIGKILL, with every process it started) in the middle
of a step.

Each worker has its own working copy and scratch directory (`nw airflow up --workers 2`); the
controller's metadata, the state (ledger, leases) and Meltano's system database are in Postgres,
the lake in the embedded S3. The same days run one after another on one machine with the local
defaults are the reference: every export in the bucket must be byte for byte theirs.

`make test-distributed` runs this module alone (it takes minutes: eight reference days, the
backfill, and the heartbeat timeout after which Airflow retries the dead worker's task).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import os
import signal
import time
from pathlib import Path

import psutil
import psycopg
import pytest
from s3_support import EmbeddedS3, local_files
from support import PROJECT, Pipeline, free_port, wait_for

from northwind_elt.core.net import answers

NORTHWIND_DAYS = [f"2024-02-0{n}" for n in range(1, 5)]
PEOPLE_DAYS = [f"2024-10-0{n}" for n in range(1, 5)]
AIRFLOW = {
    "AIRFLOW_PG_USER": "airflow",
    "AIRFLOW_PG_PASSWORD": "test-airflow-secret",
    "AIRFLOW_PG_DATABASE": "airflow",
    "NW_AIRFLOW_EXECUTOR": "edge",
    # A dead worker's task is retried once Airflow misses its heartbeat (45 s), after its step's
    # lease expired (NW_LEASE_SECONDS=20 in support.STATE), and then at once.
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "45",
    "NW_DAG_RETRY_DELAY_SECONDS": "5",
    "AIRFLOW__EDGE__JOB_POLL_INTERVAL": "2",
    "AIRFLOW__EDGE__HEARTBEAT_INTERVAL": "10",
}
# A step's own lease, `<pipeline>-<step>-<day>` (not `nw run`'s `run-...`, nor `<pipeline>-dbt-models`).
STEP_LEASE = "^(northwind|people)-.*-20[0-9-]{8}$"
HELD_BY_WORKER_1 = "SELECT name FROM nw_state.leases WHERE host = 'worker-1' AND name ~ %s"


@pytest.fixture(scope="module")
def reference(pipeline: Pipeline) -> Pipeline:
    """The days one after another on one machine, with the local defaults (disk lake, SQLite ledger)."""
    for day in NORTHWIND_DAYS:
        pipeline.run_ok("daily", day)
    for day in PEOPLE_DAYS:
        pipeline.run_ok("people-daily", day)
    return pipeline


@pytest.fixture(scope="module")
def cluster_env(
    pipeline: Pipeline, state_env: dict[str, str], embedded_s3: EmbeddedS3, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    root = tmp_path_factory.mktemp("cluster")
    env = {
        **state_env,
        **embedded_s3.lake_env("nw"),
        **AIRFLOW,
        "AIRFLOW_PG_HOST": "127.0.0.1",
        "AIRFLOW_PG_PORT": pipeline.env["PG_PORT"],
        "AIRFLOW_PORT": str(free_port()),
        "AIRFLOW_HOME": str(root / "airflow"),
        "NW_DATA_DIR": str(root / "controller"),
        "NW_HOST_ID": "controller",
    }
    up = pipeline.nw("db", "up", extra_env=env, timeout=300)  # creates the airflow database
    assert up.returncode == 0, up.stdout + up.stderr
    return env


def state_rows(env: dict[str, str], query: str, *params: object) -> list[tuple]:
    """Rows of the shared state database (none while its tables are not created yet)."""
    with psycopg.connect(
        host="127.0.0.1",
        port=env["PG_PORT"],
        user=env["NW_STATE_PG_USER"],
        password=env["NW_STATE_PG_PASSWORD"],
        dbname=env["NW_STATE_PG_DATABASE"],
        autocommit=True,
    ) as conn:
        if conn.execute("SELECT to_regclass('nw_state.leases')").fetchone()[0] is None:
            return []
        return conn.execute(query, params).fetchall()


def kill_machine(host: str, pid_file: Path) -> int:
    """What a machine's death does to its processes: all of them stop at once, releasing nothing: the
    worker and everything it started (the pid `up` wrote), and what its tasks detached (the lease
    keepers: by their NW_HOST_ID; the worker's own environment is overwritten by its process title).
    Returns how many there were."""
    worker = psutil.Process(int(pid_file.read_text()))
    doomed = {worker, *worker.children(recursive=True)}
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if proc.environ().get("NW_HOST_ID") == host:
                doomed.add(proc)
    for proc in doomed:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGKILL)
    psutil.wait_procs(list(doomed), timeout=30)
    return len(doomed)


@pytest.fixture(scope="module")
def backfill(pipeline: Pipeline, cluster_env: dict[str, str]) -> dict:
    env = cluster_env
    controller = pipeline.start("airflow", "up", "--workers", "2", extra_env=env)
    try:
        url = f"http://127.0.0.1:{env['AIRFLOW_PORT']}/execution/health"
        wait_for(lambda: answers(url), "Airflow's API server", proc=controller, limit_s=600)
        started = time.monotonic()
        backfills = {
            dag: pipeline.start(
                "airflow", "backfill", "--dag", dag, "--from", days[0], "--to", days[-1], "--wait", extra_env=env
            )
            for dag, days in (("northwind_daily", NORTHWIND_DAYS), ("people_daily", PEOPLE_DAYS))
        }
        # Worker 1 dies while it holds a step of a day (its lease in the state database).
        held: list[str] = []

        def worker_1_runs_a_step() -> bool:
            held[:] = [name for (name,) in state_rows(env, HELD_BY_WORKER_1, STEP_LEASE)]
            return bool(held)

        wait_for(worker_1_runs_a_step, "worker-1 to run a step", limit_s=900)
        pid_file = Path(env["AIRFLOW_HOME"]) / "workers" / "worker-1" / "worker.pid"
        assert kill_machine("worker-1", pid_file) >= 4  # the worker, its task, `nw run`, Meltano, ...
        killed_at = dt.datetime.now(dt.UTC)
        outputs = {dag: proc.communicate(timeout=1800)[0] for dag, proc in backfills.items()}
        seconds = time.monotonic() - started
        codes = {dag: proc.returncode for dag, proc in backfills.items()}
    finally:
        controller.send_signal(signal.SIGINT)
        stopped = controller.communicate(timeout=300)[0]
    print(f"backfill of 8 days on 2 workers (one killed): {seconds:.0f} s wall")
    return {"outputs": outputs, "codes": codes, "held": held[0], "killed_at": killed_at, "controller": stopped}


def test_every_day_of_both_pipelines_succeeds_although_a_worker_died(backfill: dict) -> None:
    for dag, output in backfill["outputs"].items():
        assert backfill["codes"][dag] == 0, output[-5000:] + backfill["controller"][-5000:]
    for day in NORTHWIND_DAYS:
        assert f"northwind_daily {day}: success" in backfill["outputs"]["northwind_daily"]
    for day in PEOPLE_DAYS:
        assert f"people_daily {day}: success" in backfill["outputs"]["people_daily"]
    assert "WARNING: worker-1 stopped" in backfill["controller"], backfill["controller"][-3000:]


def test_each_step_of_each_day_committed_exactly_once_and_never_twice_at_a_time(
    backfill: dict, cluster_env: dict[str, str]
) -> None:
    rows = state_rows(
        cluster_env,
        "SELECT pipeline, unit, step, status, started_at, finished_at, host FROM nw_state.step_runs"
        " WHERE unit = ANY(%s) ORDER BY id",
        NORTHWIND_DAYS + PEOPLE_DAYS,
    )
    successes: dict[tuple, int] = {}
    for pipeline, unit, step, status, *_ in rows:
        if status == "success":
            successes[(pipeline, unit, step)] = successes.get((pipeline, unit, step), 0) + 1
    expected = {
        ("northwind", d, s)
        for d in NORTHWIND_DAYS
        for s in ("extract-postgres", "extract-csv", "load", "transform", "export")
    }
    expected |= {
        ("people", d, s)
        for d in PEOPLE_DAYS
        for s in ("people-extract", "people-load", "people-transform", "people-export")
    }
    assert successes == dict.fromkeys(expected, 1)
    # No two attempts of one step and day overlap in time.
    by_step: dict[tuple, list[tuple[str, str]]] = {}
    for pipeline, unit, step, _, started, finished, _ in rows:
        if started:
            by_step.setdefault((pipeline, unit, step), []).append((started, finished))
    for key, spans in by_step.items():
        spans.sort()
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert end <= start, (key, spans)
    # Both workers ran steps (worker-1 until it died).
    hosts = {host for *_, status, _, _, host in rows if status == "success"}
    assert hosts <= {"worker-1", "worker-2"} and "worker-2" in hosts, hosts


def test_the_dead_attempt_is_recorded_and_nw_status_shows_it(
    backfill: dict, pipeline: Pipeline, cluster_env: dict[str, str]
) -> None:
    lease = backfill["held"]  # e.g. northwind-load-2024-02-02
    day = lease[-10:]
    pipeline_name, step = lease[: -len(day) - 1].split("-", 1)
    rows = state_rows(
        cluster_env,
        "SELECT status, host, error FROM nw_state.step_runs"
        " WHERE pipeline = %s AND unit = %s AND step = %s ORDER BY id",
        pipeline_name,
        day,
        step,
    )
    assert [r[0] for r in rows][-1] == "success" and rows[-1][1] == "worker-2", rows
    assert any(status == "interrupted" and "on worker-1" in (error or "") for status, _, error in rows), rows
    status = pipeline.nw("--date", day, "status", extra_env=cluster_env)
    assert "worker-1" in status.stdout and "interrupted" in status.stdout, status.stdout


def test_exports_are_byte_identical_to_the_days_run_one_after_another_on_one_machine(
    backfill: dict, reference: Pipeline, embedded_s3: EmbeddedS3
) -> None:
    for day in NORTHWIND_DAYS + PEOPLE_DAYS:
        local = local_files(reference.data_dir / "output" / day)
        in_bucket = embedded_s3.objects(f"nw/output/{day}/")
        assert local and in_bucket == local, (day, sorted(local), sorted(in_bucket))


def test_each_worker_ran_in_its_own_working_copy_and_scratch(cluster_env: dict[str, str], backfill: dict) -> None:
    workers = Path(cluster_env["AIRFLOW_HOME"]) / "workers"
    for name in ("worker-1", "worker-2"):
        copy = workers / name / "project"
        assert (copy / "meltano.yml").is_file() and copy.resolve() != PROJECT
        # Its own Meltano run folders and logs; the installed environments linked, as an image's.
        assert (copy / ".venv").is_symlink() and not (copy / ".meltano").is_symlink()
        assert (workers / name / "scratch" / "logs").is_dir()
    assert not os.path.exists(Path(cluster_env["NW_DATA_DIR"]) / "output")
