"""`nw airflow up|backfill`: a local Airflow on any port, and backfills of exactly a range.

One setting, AIRFLOW_PORT (from .env), drives both the API server's port and the URL its
task processes report to (Airflow derives the latter from 8080 whatever the port is, so
moving only the UI fails every task with "Connection refused"). The components start
one by one: the scheduler only once the API server answers, so no task starts early.

Metadata (runs, task logs, the admin password) lives in AIRFLOW_HOME (default .airflow/):
a SQLite database and files, kept across restarts.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from northwind_elt.core import net, settings
from northwind_elt.core.errors import ConfigError
from northwind_elt.entry import airflow_cluster
from northwind_elt.pipelines import REGISTRY

COMPONENTS = ("scheduler", "dag-processor", "triggerer")
START_LIMIT_S = 300.0
# The schedules a backfill can wait for run by run: a run per day, or per month (on its first day).
BACKFILL_UNITS = {"@daily": "day", "@monthly": "month"}


def backfill_dags() -> dict[str, str]:
    """DAG id -> its unit, for every generated DAG that runs once a day or once a month."""
    return {
        dag_id: BACKFILL_UNITS[schedule]
        for pipeline in REGISTRY.values()
        for dag_id, schedule, _ in pipeline.dags()
        if schedule in BACKFILL_UNITS
    }


def _runs_by_day(dag_id: str) -> bool:
    return any(p.runs_by_day for p in REGISTRY.values() for found, _, _ in p.dags() if found == dag_id)


def logical_days(unit: str, first: dt.date, last: dt.date) -> set[str]:
    """The logical dates of a DAG's runs in first..last: each day, or each month's first day."""
    days = (first + dt.timedelta(days=n) for n in range((last - first).days + 1))
    return {day.isoformat() for day in days if unit == "day" or day.day == 1}


def airflow_bin() -> Path:
    return settings.project_root() / ".venv-airflow" / "bin" / "airflow"


def root() -> Path:
    return settings.project_root()


def home() -> Path:
    return Path(os.environ.get("AIRFLOW_HOME") or settings.project_root() / ".airflow")


def port() -> int:
    text = os.environ.get("AIRFLOW_PORT", "8080")
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ConfigError(f"AIRFLOW_PORT={text!r} is not a port number", "set AIRFLOW_PORT in .env, e.g. 8091")
    return int(text)


def host() -> str:
    return os.environ.get("AIRFLOW_HOST", "127.0.0.1")


def api_url() -> str:
    return f"http://127.0.0.1:{port()}"


def environment(role: str = "controller") -> dict[str, str]:
    """Airflow's settings, all from the project's: the same for every component and command of
    the controller; a worker's (`nw airflow worker`) leave out what only the controller uses."""
    root = settings.project_root()
    scheduled = os.environ.get("AIRFLOW_SCHEDULED_RUNS", "false").lower() in ("1", "true", "yes")
    values = {
        **os.environ,
        "PATH": f"{airflow_bin().parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW_HOME": str(home()),
        "AIRFLOW__CORE__DAGS_FOLDER": str(root / "orchestrate" / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        # Sized to the machine, not Airflow's 32 task slots (32 worker processes on 2 cores):
        # a task is a whole Meltano job and uses a core by itself.
        "AIRFLOW__CORE__PARALLELISM": os.environ.get("AIRFLOW__CORE__PARALLELISM", str(os.cpu_count() or 2)),
        "AIRFLOW__API__WORKERS": os.environ.get("AIRFLOW__API__WORKERS", "1"),
        "AIRFLOW__API__HOST": host(),
        "AIRFLOW__API__PORT": str(port()),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api_url()}/execution/",
        # Off by default: a local Airflow runs what is triggered or backfilled, not each
        # day on its own (AIRFLOW_SCHEDULED_RUNS=true turns the schedules on).
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": str(scheduled),
        "NW_DAG_MAX_ACTIVE_RUNS": os.environ.get("NW_DAG_MAX_ACTIVE_RUNS") or "1",
        "NW_PROJECT_ROOT": str(root),
        "NO_COLOR": "1",
    }
    # An empty AIRFLOW__ setting (docker compose's default for one not set) is Airflow's default.
    values = {key: value for key, value in values.items() if value or not key.startswith("AIRFLOW__")}
    if airflow_cluster.distributed():
        # The slots are the workers' (each sized to its machine); the scheduler's cap is Airflow's own.
        values["AIRFLOW__CORE__PARALLELISM"] = os.environ.get("AIRFLOW__CORE__PARALLELISM", "32")
        values.update(airflow_cluster.edge_settings(role, api_url(), home()))
    return values


def _require_installed() -> None:
    if not airflow_bin().exists():
        raise ConfigError(f"Airflow is not installed ({airflow_bin()} missing)", "run: make airflow-install")


def answers(path: str = "/execution/health") -> bool:
    return net.answers(f"{api_url()}{path}", timeout=2, any_status=False)


def _airflow(*args: str, check: bool = True, capture: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(airflow_bin()), *args], env=environment(), capture_output=capture, text=True, cwd=settings.project_root()
    )
    if check and result.returncode != 0:
        said = (result.stderr or result.stdout or "").strip().splitlines()[-1:]  # the exception's line
        raise ConfigError(
            f"airflow {' '.join(args)} failed: {' '.join(said)}", f"fix that, then rerun (Airflow: {api_url()})"
        )
    return result


def _tail(path: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def _metadata_description(env: dict[str, str]) -> str:
    if env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor":
        return str(home() / "airflow.db")
    url = env[airflow_cluster.METADATA_ENV]
    return re.sub(r"//([^:/@]*):[^@]*@", r"//\1@", url)  # never the password


def _stop(procs: dict[str, subprocess.Popen], limit_s: float = 60) -> None:
    for proc in procs.values():
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs.values():
        try:
            proc.wait(timeout=limit_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def up(workers: int = 0) -> int:
    """Migrate, start the API server, wait until it answers, then the other components (and, in the
    distributed mode, `workers` local workers, each in its own working copy); Ctrl-C stops all."""
    _require_installed()
    distributed = airflow_cluster.distributed()
    if workers and not distributed:
        raise ConfigError(
            f"--workers needs the distributed mode ({airflow_cluster.EXECUTOR_ENV}=local runs tasks on this machine)",
            f"set {airflow_cluster.EXECUTOR_ENV}=edge in .env (README: past one machine)",
        )
    if distributed:
        airflow_cluster.require_shared_services()
    if answers():
        print(f"Airflow already answers on {api_url()}: nothing to start")
        return 0
    if net.port_taken(port(), host()):
        raise ConfigError(
            f"port {port()} on {host()} is taken by another program",
            "free it, or set AIRFLOW_PORT in .env to a free port (the UI and the task API both follow it)",
        )
    logs = home() / "logs" / "components"
    logs.mkdir(parents=True, exist_ok=True)
    env = environment()
    print(f"airflow db migrate (metadata: {_metadata_description(env)})", flush=True)
    _airflow("db", "migrate")
    if distributed:
        _migrate_meltano()
    procs: dict[str, subprocess.Popen] = {}
    stop = {"signal": None}

    def on_signal(signum: int, _frame: object) -> None:
        stop["signal"] = signum

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}

    def start(name: str, args: list[str], environ: dict[str, str], cwd: Path) -> None:
        log = (logs / f"{name}.log").open("a")
        # Each in its own process group: a stop reaches the processes it started, and a worker
        # killed with its tasks (a machine lost) takes nothing else with it.
        procs[name] = subprocess.Popen(
            args, env=environ, stdout=log, stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True
        )

    lost: set[str] = set()
    try:
        start("api-server", [str(airflow_bin()), "api-server", "--port", str(port()), "--host", host()], env, root())
        deadline = time.monotonic() + START_LIMIT_S
        while not answers():
            if procs["api-server"].poll() is not None or time.monotonic() > deadline or stop["signal"]:
                raise ConfigError(
                    f"the Airflow API server did not answer on {api_url()}:\n{_tail(logs / 'api-server.log')}",
                    f"see {logs / 'api-server.log'}",
                )
            time.sleep(0.5)
        for name in COMPONENTS:
            start(name, [str(airflow_bin()), name], env, root())
        for number in range(1, workers + 1):
            name = f"worker-{number}"
            place = home() / "workers" / name
            copy = airflow_cluster.prepare_working_copy(place / "project")
            scratch = place / "scratch"
            scratch.mkdir(parents=True, exist_ok=True)
            start(
                name,
                [str(copy / ".venv" / "bin" / "nw"), "airflow", "worker", "--name", name],
                {
                    **airflow_cluster.worker_environment(name, copy, scratch),
                    airflow_cluster.SECRET_ENV: env[airflow_cluster.SECRET_ENV],
                },
                copy,
            )
            (place / "worker.pid").write_text(str(procs[name].pid))
            print(f"{name}: working copy {copy}, scratch {scratch}", flush=True)
        passwords = home() / "simple_auth_manager_passwords.json.generated"
        executor = "EdgeExecutor" if distributed else "LocalExecutor"
        print(
            f"Airflow is up on {api_url()} (user admin, password in {passwords}); task API {api_url()}/execution/\n"
            f"Executor: {executor}. Component logs: {logs}. Scheduled runs: "
            f"{env['AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE']} (AIRFLOW_SCHEDULED_RUNS). Ctrl-C stops Airflow.",
            flush=True,
        )
        while stop["signal"] is None:
            for name, proc in procs.items():
                if proc.poll() is None or name in lost:
                    continue
                if name.startswith("worker-"):
                    # A machine lost: Airflow retries its tasks elsewhere once their heartbeat is
                    # missed; the controller and the other workers carry on.
                    lost.add(name)
                    print(
                        f"WARNING: {name} stopped (exit status {proc.returncode}); Airflow retries its tasks on "
                        f"the other workers once it misses their heartbeat "
                        f"({env.get(airflow_cluster.HEARTBEAT_ENV)} s). Log: {logs / f'{name}.log'}",
                        file=sys.stderr,
                        flush=True,
                    )
                    continue
                print(f"ERROR: Airflow's {name} stopped:\n{_tail(logs / f'{name}.log')}", file=sys.stderr)
                return 1
            time.sleep(0.5)
        return 0
    finally:
        _stop(procs)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if procs:
            print("Airflow stopped", flush=True)


def _migrate_meltano() -> None:
    """Meltano's system database, shared by the workers, migrated once here: the first Meltano runs
    of several workers would otherwise race to create its tables (and all but one fail)."""
    from northwind_elt.protocol.meltano import meltano_executable

    print("meltano upgrade database (Meltano's system database: MELTANO_DATABASE_URI)", flush=True)
    result = subprocess.run(
        [meltano_executable(), "upgrade", "database"], capture_output=True, text=True, cwd=root(), env=os.environ
    )
    if result.returncode != 0:
        from northwind_elt.core.ledger import redact

        said = (result.stderr or result.stdout).strip().splitlines()[-1:]
        raise ConfigError(
            f"meltano upgrade database failed: {redact(' '.join(said))}",
            "check MELTANO_DATABASE_URI in .env (the workers' shared Meltano database), then rerun: nw airflow up",
        )


def worker(name: str | None, concurrency: int | None) -> int:
    """This working copy as a worker of the distributed mode: `airflow edge worker`, in this process."""
    _require_installed()
    if not airflow_cluster.distributed():
        raise ConfigError(
            f"a worker belongs to the distributed mode, and {airflow_cluster.EXECUTOR_ENV} is local",
            f"set {airflow_cluster.EXECUTOR_ENV}=edge in .env, and NW_AIRFLOW_URL to the controller's API server",
        )
    airflow_cluster.require_shared_services()
    env = environment("worker")
    name = name or env.get("NW_HOST_ID") or socket.gethostname()
    configured = os.environ.get("NW_AIRFLOW_WORKER_CONCURRENCY")
    slots = concurrency or int(configured or airflow_cluster.DEFAULT_WORKER_CONCURRENCY)
    env["NW_HOST_ID"] = env.get("NW_HOST_ID") or name  # the ledger and the leases name this machine so
    print(
        f"edge worker {name}: tasks from {airflow_cluster.controller_url(api_url())}, {slots} at a time; "
        f"working copy {root()}, scratch {settings.data_dir()}",
        flush=True,
    )
    # Replaced by the worker itself: signals reach it directly, and it drains its tasks on SIGTERM.
    os.execve(str(airflow_bin()), [str(airflow_bin()), "edge", "worker", "-H", name, "-c", str(slots)], env)  # noqa: S606
    return 0  # not reached


def _runs(dag_id: str) -> list[dict]:
    result = _airflow("dags", "list-runs", dag_id, "-o", "json")
    # Airflow prints warnings before the JSON (graphviz missing): the JSON is its own line.
    lines = [line for line in result.stdout.splitlines() if line.startswith(("[{", "[]"))]
    return json.loads(lines[-1]) if lines else []


def _paused(dag_id: str) -> bool | None:
    """Whether the DAG is paused; None while the dag processor has not stored it yet."""
    result = _airflow("dags", "details", dag_id, "-o", "json", check=False)
    said = (result.stderr + result.stdout).strip()
    if result.returncode != 0 and "does not exist" in said:
        return None
    lines = [line for line in result.stdout.splitlines() if line.startswith("[{")]
    if result.returncode != 0 or not lines:
        raise ConfigError(
            f"airflow dags details {dag_id} failed: {said.splitlines()[-1] if said else result.returncode}",
            f"fix that, then rerun (check the DAGs: airflow dags list-import-errors; logs in {home()})",
        )
    return str(json.loads(lines[-1])[0]["is_paused"]).lower() == "true"


def _create_backfill(dag_id: str, first: dt.date, last: dt.date) -> None:
    """Unpause the DAG and create the backfill, once the dag processor has stored the DAG. Right
    after `up` it may not have, and `airflow dags unpause` of a DAG not stored yet exits 0 doing
    nothing: the DAG would then be stored paused and the backfill's runs stay queued for ever."""
    deadline = time.monotonic() + START_LIMIT_S
    while (paused := _paused(dag_id)) is None:
        if time.monotonic() > deadline:
            raise ConfigError(
                f"Airflow's dag processor has not stored {dag_id} after {START_LIMIT_S:.0f} s",
                f"check the DAGs: airflow dags list-import-errors; logs in {home()}",
            )
        print(f"waiting for the dag processor to parse {dag_id}", flush=True)
        time.sleep(2)
    if paused:
        # Paused DAGs run nothing, backfills included. Unpausing creates no scheduled run
        # while AIRFLOW_SCHEDULED_RUNS is off (the default): only the range runs.
        _airflow("dags", "unpause", dag_id)
    create = ("backfill", "create", "--dag-id", dag_id, "--from-date", first.isoformat(), "--to-date", last.isoformat())
    # A backfill has its own limit on runs at once (the DAG's max_active_runs does not bind it):
    # the DAG's, so the days run in order on one machine, and side by side across workers.
    runs_at_once = environment()["NW_DAG_MAX_ACTIVE_RUNS"] if _runs_by_day(dag_id) else "1"
    result = _airflow(*create, "--reprocess-behavior", "completed", "--max-active-runs", runs_at_once, check=False)
    if result.returncode != 0:
        said = (result.stderr + result.stdout).strip()
        raise ConfigError(
            f"airflow backfill for {dag_id} failed: {said.splitlines()[-1] if said else result.returncode}",
            f"fix that, then rerun (check the DAGs: airflow dags list-import-errors; logs in {home()})",
        )


def backfill(dag_id: str, first: dt.date, last: dt.date, wait: bool) -> int:
    """Runs of `dag_id` for the days (or months) in first..last only; with wait, until they end."""
    known = backfill_dags()
    if dag_id not in known:
        raise ConfigError(f"no daily or monthly DAG {dag_id!r}", f"use one of: {', '.join(known)}")
    if last < first:
        raise ConfigError(f"the range {first}..{last} is empty", "give --from before or on --to")
    days = logical_days(known[dag_id], first, last)
    if not days:
        raise ConfigError(
            f"{dag_id} runs on the first day of each month: {first}..{last} holds none",
            "give a range that holds a month's first day, e.g. --from 2022-01-01 --to 2022-12-31",
        )
    _require_installed()
    if not answers():
        raise ConfigError(f"no Airflow answers on {api_url()} (AIRFLOW_PORT)", "start it first: make airflow")
    _create_backfill(dag_id, first, last)
    if environment()["AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE"] == "True":
        print(f"note: AIRFLOW_SCHEDULED_RUNS is on: {dag_id} also runs on its schedule now that it is unpaused")
    unit = known[dag_id]
    print(f"backfill of {dag_id} created for {first}..{last} ({len(days)} {unit}s); UI: {api_url()}/dags/{dag_id}")
    if not wait:
        return 0
    shown: dict[str, str] = {}
    waited_since = time.monotonic()
    while True:
        runs = [r for r in _runs(dag_id) if (r.get("logical_date") or "")[:10] in days]
        states = {r["logical_date"][:10]: r["state"] for r in runs}
        # Never silent: each change of a run's state, and a line a minute while nothing changes.
        for day in sorted(states):
            if shown.get(day) != states[day]:
                print(f"  {dag_id} {day}: {states[day]}", flush=True)
                shown[day] = states[day]
                waited_since = time.monotonic()
        if len(states) == len(days) and all(s in ("success", "failed") for s in states.values()):
            break
        if time.monotonic() - waited_since >= 60:
            done = sum(s in ("success", "failed") for s in states.values())
            print(f"  waiting: {done} of {len(days)} {known[dag_id]}s finished", flush=True)
            waited_since = time.monotonic()
        if not answers():
            raise ConfigError(
                f"Airflow stopped answering on {api_url()} while the backfill ran", "start it again: make airflow"
            )
        time.sleep(10)  # each `airflow` command costs seconds of CPU the runs need
    failed = sorted(d for d, s in states.items() if s == "failed")
    if failed:
        print(f"FAILED {unit}s: {', '.join(failed)}. What failed and what to rerun: nw status", file=sys.stderr)
        return 1
    return 0


def record_failure(pipeline: str, step: str, day: dt.date, since: str | None, reason: str, where: str) -> str:
    """Called by the DAGs' failure callback: a task that failed without `nw run` recording it
    (killed, timed out, or never started: Airflow's API unreachable) gets a ledger entry."""
    from northwind_elt.core import ledger
    from northwind_elt.pipelines import REGISTRY
    from northwind_elt.protocol import units

    definition = REGISTRY[pipeline]
    unit = units.unit_of(definition, day)  # PADAM: the month of the run's first day
    entry = ledger.latest(pipeline, unit).get(step)
    if entry and since and entry["finished_at"] >= since[:19] and entry["status"] != "success":
        return f"{pipeline} {step} {day}: already recorded by nw run ({entry['status']})"
    units.record(
        definition,
        unit,
        step,
        "failed",
        error=f"Airflow: {reason}\n---\n{where}\nThe step's own command did not record this attempt: it was "
        "killed, timed out or never started. See the task's log in Airflow; if every task fails the same way, "
        "check that Airflow's task API answers (AIRFLOW_PORT, docs/failure-modes.md).",
    )
    return f"{pipeline} {step} {day}: Airflow's failure recorded in the ledger"
