"""Wall time of a backfill in Airflow's distributed mode, with 1 worker and with 2 (or any list),
against the same days run one after another by `nw run` on one machine.

Starts its own embedded Postgres and S3 (SeaweedFS) on free ports in a scratch directory, runs
each round on a fresh Airflow metadata database, and prints where the time goes: the steps'
own wall seconds (from the ledger) against the backfill's wall time.

    .venv/bin/python scripts/benchmark_distributed.py --workers 1,2 --days 4
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

PROJECT = Path(__file__).resolve().parent.parent
NW = str(PROJECT / ".venv" / "bin" / "nw")
DATABASES = {
    "SOURCE_PG": ("northwind_reader", "northwind"),
    "ANALYTICS_PG": ("analytics", "analytics"),
    "PEOPLE_PG": ("people", "people"),
    "PADAM_PROD_PG": ("padam_production", "padam_production"),
    "PADAM_WH_PG": ("padam_warehouse", "padam_warehouse"),
    "ADS_PG": ("ads", "ads"),
    "NW_STATE_PG": ("nw_state", "nw_state"),
    "AIRFLOW_PG": ("airflow", "airflow"),
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def environment(root: Path) -> dict[str, str]:
    port, s3 = str(free_port()), f"http://127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NW_", "AIRFLOW", "MELTANO_DATABASE"))}
    for prefix, (user, database) in DATABASES.items():
        env |= {
            f"{prefix}_HOST": "127.0.0.1",
            f"{prefix}_PORT": port,
            f"{prefix}_USER": user,
            f"{prefix}_PASSWORD": f"bench-{user}",
            f"{prefix}_DATABASE": database,
        }
    return env | {
        "PG_PORT": port,
        "NW_PGDATA": str(root / "pgdata"),
        "NW_DATA_DIR": str(root / "controller"),
        "NW_HOST_ID": "controller",
        "MELTANO_PROJECT_ROOT": str(PROJECT),
        "NW_PROJECT_ROOT": str(PROJECT),
        "ADS_S3_ENDPOINT_URL": s3,
        "ADS_S3_DATA_DIR": str(root / "s3"),
        "ADS_S3_REGION": "us-east-1",
        "ADS_S3_BUCKET": "ad-data",
        "ADS_S3_ACCESS_KEY_ID": "northwind",
        "ADS_S3_SECRET_ACCESS_KEY": "northwind-local",
        "NW_LAKE_URL": "s3://lake/nw",
        "NW_LAKE_S3_ENDPOINT_URL": s3,
        "NW_LAKE_S3_REGION": "us-east-1",
        "NW_LAKE_S3_ACCESS_KEY_ID": "northwind",
        "NW_LAKE_S3_SECRET_ACCESS_KEY": "northwind-local",
        "NW_STATE_BACKEND": "postgres",
        "MELTANO_DATABASE_URI": f"postgresql+psycopg://nw_state:bench-nw_state@127.0.0.1:{port}/nw_state",
        "NW_AIRFLOW_EXECUTOR": "edge",
        "AIRFLOW_PORT": str(free_port()),
        "AIRFLOW__EDGE__JOB_POLL_INTERVAL": "2",
        "RUN_DATE_MAX_FUTURE_DAYS": "1",
    }


def nw(env: dict[str, str], *args: str) -> None:
    result = subprocess.run([NW, *args], env=env, cwd=PROJECT, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"nw {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")


def step_seconds(env: dict[str, str], since: str) -> dict[str, float]:
    with psycopg.connect(
        host="127.0.0.1",
        port=env["PG_PORT"],
        user="nw_state",
        password="bench-nw_state",  # noqa: S106 (the scratch server this script starts)
        dbname="nw_state",
        autocommit=True,
    ) as conn:
        rows = conn.execute(
            "SELECT step, sum(coalesce(wall_s, duration_s)) FROM nw_state.step_runs"
            " WHERE finished_at >= %s AND status = 'success' GROUP BY step ORDER BY step",
            [since],
        ).fetchall()
    return {step: round(float(seconds), 1) for step, seconds in rows}


def one_machine(env: dict[str, str], northwind: list[str], people: list[str]) -> float:
    local = {k: v for k, v in env.items() if not k.startswith(("NW_LAKE", "NW_STATE_BACKEND", "MELTANO_DATABASE"))}
    local["NW_DATA_DIR"] = str(Path(env["NW_DATA_DIR"]).parent / "one-machine")
    started = time.monotonic()
    for day in northwind:
        nw(local, "--date", day, "run", "daily")
    for day in people:
        nw(local, "--date", day, "run", "people-daily")
    return time.monotonic() - started


def backfill(env: dict[str, str], workers: int, northwind: list[str], people: list[str]) -> tuple[float, dict]:
    env = {**env, "AIRFLOW_HOME": str(Path(env["NW_DATA_DIR"]).parent / f"airflow-{workers}")}
    env["AIRFLOW_PG_DATABASE"] = f"airflow_{workers}"  # a fresh metadata database per round
    nw(env, "db", "up")
    controller = subprocess.Popen(
        [NW, "airflow", "up", "--workers", str(workers)], env=env, cwd=PROJECT, start_new_session=True
    )
    try:
        url = f"http://127.0.0.1:{env['AIRFLOW_PORT']}/execution/health"
        while subprocess.run(["curl", "-sf", url], capture_output=True).returncode != 0:
            if controller.poll() is not None:
                sys.exit("nw airflow up stopped")
            time.sleep(1)
        since = dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(timespec="seconds")
        started = time.monotonic()
        runs = [
            subprocess.Popen(
                [NW, "airflow", "backfill", "--dag", dag, "--from", days[0], "--to", days[-1], "--wait"],
                env=env,
                cwd=PROJECT,
                stdout=subprocess.DEVNULL,
            )
            for dag, days in (("northwind_daily", northwind), ("people_daily", people))
        ]
        if any(run.wait() != 0 for run in runs):
            sys.exit(f"a backfill with {workers} workers failed")
        return time.monotonic() - started, step_seconds(env, since)
    finally:
        os.killpg(controller.pid, signal.SIGINT)
        controller.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts (default 1,2)")
    parser.add_argument("--days", type=int, default=4)
    args = parser.parse_args()
    northwind = [(dt.date(2024, 2, 1) + dt.timedelta(days=n)).isoformat() for n in range(args.days)]
    people = [(dt.date(2024, 10, 1) + dt.timedelta(days=n)).isoformat() for n in range(args.days)]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped"))  # the servers are stopped on the way out
    root = Path(tempfile.mkdtemp(prefix="nw-bench-distributed-"))
    root.chmod(0o755)  # the embedded server may run as another OS user
    env = environment(root)
    try:
        nw(env, "db", "up")
        nw(env, "s3", "up")
        results = {"one machine, nw run, one day after another": (one_machine(env, northwind, people), {})}
        for workers in [int(n) for n in args.workers.split(",")]:
            results[f"Airflow, EdgeExecutor, {workers} worker(s)"] = backfill(env, workers, northwind, people)
        print(f"\n{args.days} days of northwind_daily + {args.days} of people_daily, {os.cpu_count()} cores")
        for name, (seconds, steps) in results.items():
            busy = sum(steps.values())
            said = f"; steps' own wall seconds {busy:.0f} s: {steps}" if steps else ""
            print(f"  {name}: {seconds:.0f} s wall{said}")
    finally:
        subprocess.run([NW, "s3", "down"], env=env, cwd=PROJECT, capture_output=True)
        subprocess.run([NW, "db", "stop"], env=env, cwd=PROJECT, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
