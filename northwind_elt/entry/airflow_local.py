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
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from northwind_elt.core import net, settings, text
from northwind_elt.core.errors import ConfigError
from northwind_elt.core.text import plural
from northwind_elt.entry import airflow_cluster
from northwind_elt.entry.progress import LiveProgress, Task
from northwind_elt.pipelines import REGISTRY

COMPONENTS = ("scheduler", "dag-processor", "triggerer")
START_LIMIT_S = 300.0
# The schedules a backfill can wait for run by run: a run per day, or per month (on its first day).
BACKFILL_UNITS = {"@daily": "day", "@monthly": "month"}
# Asks for a backfill again while Airflow answers 503 (its SQLite database locked by the scheduler).
BACKFILL_CREATE_ATTEMPTS = 10
BACKFILL_RETRY_S = 2.0


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
        **{name: os.environ.get(name) or value for name, value in machine_sizing(os.cpu_count() or 2).items()},
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


def machine_sizing(cpus: int) -> dict[str, str]:
    """Airflow's process counts for a machine with `cpus` cores (each overridable from .env), not its
    defaults for a server: the LocalExecutor starts `parallelism` worker processes at once (32 by
    default, about 1 GB on a 2-core machine), while a task here is a whole Meltano job using a core
    by itself; one UI user needs one API server worker, and one DAG file one parsing process."""
    return {
        "AIRFLOW__CORE__PARALLELISM": str(max(1, cpus)),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
    }


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


def _span(seconds: float | str | None) -> str:
    """A span of seconds as every message says one (core/text.py): '5 minutes', '45 seconds'."""
    try:
        return text.duration(dt.timedelta(seconds=float(seconds)))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return f"{seconds} (seconds)"


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
        if not distributed:
            slots = env["AIRFLOW__CORE__PARALLELISM"]
            executor += f" ({slots} task slots on {os.cpu_count()} cores: AIRFLOW__CORE__PARALLELISM)"
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
                        f"({_span(env.get(airflow_cluster.HEARTBEAT_ENV))}). Log: {logs / f'{name}.log'}",
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


def _paused(api: AirflowApi, dag_id: str) -> bool | None:
    """Whether the DAG is paused; None while the dag processor has not stored it yet."""
    try:
        return bool(api.call("GET", f"/dags/{dag_id}")["is_paused"])
    except ApiError as err:
        if err.status == 404:
            return None
        raise


def runs_at_once(dag_id: str) -> int:
    """The DAG's max_active_runs, as the DAG file sets it: NW_DAG_MAX_ACTIVE_RUNS for a day-protocol
    DAG (1 on one machine), 1 for PADAM's months and ads' runs."""
    return int(environment()["NW_DAG_MAX_ACTIVE_RUNS"]) if _runs_by_day(dag_id) else 1


def _create_backfill(
    api: AirflowApi, dag_id: str, first: dt.date, last: dt.date, at_once: int, progress: LiveProgress
) -> None:
    """Unpause the DAG and create the backfill, once the dag processor has stored the DAG. Right
    after `up` it may not have, and unpausing a DAG not stored yet does nothing: the DAG would
    then be stored paused and the backfill's runs stay queued for ever."""
    deadline = time.monotonic() + START_LIMIT_S
    waiting = None
    while (paused := _paused(api, dag_id)) is None:
        if time.monotonic() > deadline:
            raise ConfigError(
                f"Airflow's dag processor has not stored {dag_id} after {_span(START_LIMIT_S)}",
                f"check the DAGs: airflow dags list-import-errors; logs in {home()}",
            )
        waiting = waiting or progress.start(f"waiting for the dag processor to parse {dag_id}")
        time.sleep(2)
    if waiting is not None:
        waiting.finish(f"{dag_id} parsed by the dag processor")
    if paused:
        # Paused DAGs run nothing, backfills included. Unpausing creates no scheduled run
        # while AIRFLOW_SCHEDULED_RUNS is off (the default): only the range runs.
        api.call("PATCH", f"/dags/{dag_id}", body={"is_paused": False})
    body = {
        "dag_id": dag_id,
        "from_date": f"{first.isoformat()}T00:00:00Z",
        "to_date": f"{last.isoformat()}T00:00:00Z",
        "reprocess_behavior": "completed",  # finished days run again
        # A backfill has its own limit on runs at once (10 unless given; the DAG's max_active_runs does
        # not bind it): the DAG's, so the days run in order on one machine, side by side across workers.
        "max_active_runs": at_once,
    }
    try:
        for attempt in range(1, BACKFILL_CREATE_ATTEMPTS + 1):
            try:
                api.call("POST", "/backfills", body=body)
                break
            except ApiError as err:
                # 503: the metadata database was locked (SQLite, the local default, while the scheduler
                # writes); Airflow asks to try again.
                if err.status != 503 or attempt == BACKFILL_CREATE_ATTEMPTS:
                    raise
                progress.print(
                    f"  Airflow is busy ({err.detail[:80]}): asking again in {BACKFILL_RETRY_S:.0f} s ({attempt} of "
                    f"{BACKFILL_CREATE_ATTEMPTS})"
                )
                time.sleep(BACKFILL_RETRY_S)
    except ApiError as err:
        if err.status == 409:  # Airflow's AlreadyRunningBackfill: one backfill of a DAG at a time
            fix = (
                f"wait for the backfill of {dag_id} that still runs, or cancel it in the UI "
                f"({api_url()}/dags/{dag_id}, its Backfills tab); then rerun this command"
            )
        else:
            fix = (
                f"fix what Airflow says, then rerun this command; if it names the DAG, check the DAGs "
                f"(airflow dags list-import-errors; the API server's log in {home() / 'logs' / 'components'})"
            )
        raise ConfigError(
            f"Airflow refused the backfill of {dag_id} for {first}..{last} (HTTP {err.status}): {err.detail}", fix
        ) from None


def scheduled_runs() -> bool:
    return environment()["AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE"] == "True"


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
    unit = known[dag_id]
    at_once = runs_at_once(dag_id)
    api = AirflowApi(api_url(), home() / PASSWORDS_FILE)
    with LiveProgress() as progress:
        _create_backfill(api, dag_id, first, last, at_once, progress)
        if scheduled_runs():
            progress.print(
                f"note: AIRFLOW_SCHEDULED_RUNS is on: {dag_id} also runs on its schedule now that it is unpaused"
            )
        progress.print(
            f"backfill of {dag_id} created for {first}..{last} ({plural(len(days), unit)}), "
            f"{order_note(dag_id, unit, at_once)}; UI: {api_url()}/dags/{dag_id}"
        )
        if not wait:
            if not scheduled_runs():
                progress.print(
                    f"{dag_id} stays unpaused after its runs (scheduled runs are off, so nothing else starts); "
                    "--wait pauses it again once they have ended"
                )
            return 0
        code, said = wait_and_pause(api, dag_id, days, unit, progress, scheduled=scheduled_runs())
    if said:
        print(said, file=sys.stderr)  # after the live display, so it stays on screen whole
    return code


def wait_and_pause(
    api: AirflowApi,
    dag_id: str,
    days: set[str],
    unit: str,
    progress: LiveProgress,
    *,
    scheduled: bool,
    polling: Polling | None = None,
) -> tuple[int, str]:
    """`backfill --wait` once the backfill exists: wait for its runs, then pause the DAG again (when
    scheduled runs are off). The exit status and what to print on stderr: the failed days, or, when
    the wait ends before the runs (Ctrl-C, Airflow's API failing), that the backfill goes on."""
    try:
        finished = wait_for_backfill(api, dag_id, days, unit, progress, polling)
    except KeyboardInterrupt:
        return 130, left_running(dag_id, days, "interrupted (Ctrl-C)", scheduled)
    except ConfigError as err:
        return 1, left_running(dag_id, days, f"{err.cause} (fix: {err.fix})", scheduled)
    if not scheduled:
        _pause_when_idle(api, dag_id, progress)
    failed = sorted(day for day, run in finished.items() if run.state == "failed")
    if not failed:
        return 0, ""
    what = "; ".join(f"{day} ({finished[day].failure()})" for day in failed)
    return 1, (
        f"FAILED {unit}s: {what}.\n"
        f"Cause and fix: nw status --date {failed[0]} (and the failed task's log in the UI).\n"
        f"Then rerun: nw airflow backfill --dag {dag_id} --from {failed[0]} --to {failed[-1]} --wait"
    )


def left_running(dag_id: str, days: set[str], why: str, scheduled: bool) -> str:
    """What goes on when `backfill --wait` stops waiting before the runs end: the backfill is Airflow's
    and runs on, and nothing pauses the DAG again. A second backfill of the range would be refused
    while this one runs (Airflow allows one per DAG), so the UI is where to follow it."""
    first, last = min(days), max(days)
    ui = f"{api_url()}/dags/{dag_id}"
    lines = [
        f"ERROR: stopped waiting for the backfill of {dag_id} for {first}..{last}: {why}",
        f"The backfill goes on in Airflow: follow its runs in the UI, {ui} (its Backfills tab lists it; cancel it "
        "there to stop it).",
    ]
    if not scheduled:
        lines.append(
            f"{dag_id} is left unpaused (scheduled runs are off, so nothing else starts): once its runs have "
            f"ended, pause it with the toggle by its name in the UI, {ui}."
        )
    lines.append(
        f"Failed days then: nw status --date DAY; rerun them: nw airflow backfill --dag {dag_id} --from DAY --to DAY "
        "--wait"
    )
    return "\n".join(lines)


def order_note(dag_id: str, unit: str, at_once: int) -> str:
    """How the backfill's runs follow each other, and which setting says so."""
    if not _runs_by_day(dag_id):
        reason = "each month follows the one before" if unit == "month" else "its runs stay one at a time"
        return f"one {unit} at a time (max_active_runs 1: {reason})"
    if at_once == 1:
        return f"one {unit} after another, in order (max_active_runs 1: NW_DAG_MAX_ACTIVE_RUNS)"
    return f"up to {at_once} {unit}s at once (max_active_runs {at_once}: NW_DAG_MAX_ACTIVE_RUNS)"


# -- a backfill, waited for ----------------------------------------------------------------
PASSWORDS_FILE = "simple_auth_manager_passwords.json.generated"
FINISHED = ("success", "failed")


class ApiError(ConfigError):
    """Airflow's API answered with an error: its HTTP status and what it said."""

    def __init__(self, status: int, detail: str, method: str, path: str) -> None:
        self.status, self.detail = status, detail
        super().__init__(
            f"Airflow's API answered {status} to {method} {path}: {detail}",
            f"see the API server's log in {home() / 'logs' / 'components'}",
        )


class AirflowApi:
    """Airflow's REST API (v2), signed in as the simple auth manager's admin (the password `up`'s
    Airflow wrote in AIRFLOW_HOME): a poll is an HTTP request, where an `airflow` command costs
    seconds of the CPU the runs need."""

    def __init__(self, base_url: str, passwords: Path) -> None:
        self.base_url, self.passwords = base_url.rstrip("/"), passwords
        self._token: str | None = None

    def _sign_in(self) -> str:
        try:
            users = json.loads(self.passwords.read_text())
        except (OSError, ValueError):
            users = {}
        user = "admin" if "admin" in users else next(iter(users), None)
        # Without a password file (simple_auth_manager_all_admins), a GET hands out the token.
        body = json.dumps({"username": user, "password": users[user]}).encode() if user else None
        request = urllib.request.Request(  # noqa: S310 - Airflow's own http URL
            f"{self.base_url}/auth/token", data=body, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - Airflow's own http URL
                return json.load(response)["access_token"]
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(
                f"could not sign in to Airflow's API at {self.base_url} as {user or 'admin'}: {exc}",
                f"check the admin password in {self.passwords} (Airflow writes it on start: nw airflow up)",
            ) from None

    def call(self, method: str, path: str, body: dict | None = None, **params: str | list[str]) -> dict:
        pairs = [
            (key, item) for key, value in params.items() for item in (value if isinstance(value, list) else [value])
        ]
        url = f"{self.base_url}/api/v2{path}" + (f"?{urllib.parse.urlencode(pairs)}" if pairs else "")
        data = json.dumps(body).encode() if body is not None else None
        for attempt in (1, 2):
            self._token = self._token or self._sign_in()
            headers = {"Authorization": f"Bearer {self._token}", "Content-Type": "application/json"}
            try:
                request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310
                with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - Airflow's own http URL
                    return json.load(response)
            except urllib.error.HTTPError as exc:
                if exc.code == 401 and attempt == 1:
                    self._token = None  # expired: sign in again
                    continue
                said = exc.read().decode(errors="replace")
                with contextlib.suppress(ValueError, TypeError, KeyError):
                    said = str(json.loads(said)["detail"])
                raise ApiError(exc.code, said[:300], method, path) from None
        raise AssertionError("not reached")


@dataclass(frozen=True)
class TaskRun:
    task_id: str
    state: str | None
    try_number: int
    start: dt.datetime | None
    seconds: float | None

    def label(self) -> str | None:
        """The task's state as `backfill --wait` prints it; None for a task not started yet."""
        tried = f"try {self.try_number}"
        if self.state == "running":
            return "running" + (f" ({tried})" if self.try_number > 1 else "")
        if self.state == "success":
            return "success" + (f" in {duration(self.seconds)}" if self.seconds is not None else "")
        if self.state == "up_for_retry":
            return f"failed on {tried}, Airflow retries it"
        if self.state == "failed":
            return f"failed on {tried}, no retry left"
        if self.state == "upstream_failed":
            return "not run: a task before it failed"
        if self.state in (None, "none", "scheduled", "queued", "removed"):
            return None
        return self.state


@dataclass(frozen=True)
class DayRun:
    state: str
    tasks: tuple[TaskRun, ...] = ()

    @property
    def retrying(self) -> bool:
        return self.state not in FINISHED and any(task.state == "up_for_retry" for task in self.tasks)

    def failure(self) -> str:
        failed = [f"{t.task_id} failed on try {t.try_number}" for t in self.tasks if t.state == "failed"]
        return ", ".join(failed) or "the run failed"


def duration(seconds: float | None) -> str:
    """Measured seconds as `nw status` shows a step's (core/text.py): '9.6 s', '1,234.0 s'."""
    return f"{text.seconds(max(0.0, seconds or 0.0))} s"


class BackfillWatch:
    """What `backfill --wait` shows (through entry/progress.py: rich's live display on a terminal,
    plain lines in a pipe or a log): each change of a run's or a task's state as Airflow reports
    it, the count of days done, running, retrying and failed after each change of a day, and, while
    nothing changes, what is still running (or waited for) and for how long, at least every 5 s."""

    def __init__(self, dag_id: str, days: set[str], unit: str, progress: LiveProgress) -> None:
        self.dag_id, self.days, self.unit, self.progress = dag_id, days, unit, progress
        self.shown_days: dict[str, str] = {}
        self.shown_tasks: dict[tuple[str, str], str] = {}
        self.tries: dict[tuple[str, str], int] = {}
        self.activities: dict[str, Task] = {}
        self.latest: dict[str, DayRun] = {}
        progress.summary = lambda tasks, now: (
            f"  still running: {', '.join(f'{t.name} ({duration(t.elapsed(now))})' for t in tasks)} "
            f"| {self.summary(self.latest)}"
        )

    def show(self, runs: dict[str, DayRun], now: dt.datetime) -> None:
        """The runs as last polled: print what changed, and keep the live rows to what runs now."""
        self.latest = runs
        for line in self.changes(runs):
            self.progress.print(line)
        wanted = self.waiting_on(runs, now)
        for name in [name for name in self.activities if name not in wanted]:
            self.activities.pop(name).finish()
        for name, seconds in wanted.items():
            if name not in self.activities:
                task = self.activities[name] = self.progress.start(name)
                task.started -= seconds  # already running when first seen: its elapsed time is Airflow's

    def close(self) -> None:
        for task in self.activities.values():
            task.finish()
        self.activities.clear()

    def changes(self, runs: dict[str, DayRun]) -> list[str]:
        lines: list[str] = []
        day_changed = False
        for day in sorted(runs):
            run = runs[day]
            state = "retrying" if run.retrying else run.state
            day_line = None
            if self.shown_days.get(day) != state:
                self.shown_days[day], day_changed = state, True
                day_line = f"  {self.dag_id} {day}: {state}"
            if day_line and state not in FINISHED:
                lines.append(day_line)  # a day starts before its tasks, and ends after them
            for task in run.tasks:
                key = (day, task.task_id)
                tried_before = self.tries.get(key, 0)  # 0: not started yet when last seen
                retried = task.state == "running" and 0 < tried_before < task.try_number
                if retried and "failed" not in self.shown_tasks.get(key, ""):
                    # Airflow retried it between two polls: its failed try was never seen as such.
                    lines.append(f"  {self.dag_id} {day} {task.task_id}: failed on try {self.tries[key]}, retried")
                self.tries[key] = task.try_number
                label = task.label()
                if label is not None and self.shown_tasks.get(key) != label:
                    self.shown_tasks[key] = label
                    lines.append(f"  {self.dag_id} {day} {task.task_id}: {label}")
            if day_line and state in FINISHED:
                lines.append(day_line)
        if day_changed and not self.finished(runs):  # the last count is said with the time it took
            lines.append(f"  {self.summary(runs)}")
        return lines

    def waiting_on(self, runs: dict[str, DayRun], now: dt.datetime) -> dict[str, float]:
        """What the backfill waits on now, each with the seconds it has waited as far as Airflow says:
        the running tasks, the failed tries Airflow will retry, or Airflow starting the next task."""
        if self.finished(runs):
            return {}
        running = {
            f"{day} {task.task_id}": (now - task.start).total_seconds() if task.start else 0.0
            for day, run in sorted(runs.items())
            for task in run.tasks
            if task.state == "running"
        }
        retried = {
            f"{day} {task.task_id}, waiting for its retry": 0.0
            for day, run in sorted(runs.items())
            for task in run.tasks
            if task.state == "up_for_retry"
        }
        return {**running, **retried} or {"waiting for Airflow to start the next task": 0.0}

    def finished(self, runs: dict[str, DayRun]) -> bool:
        return len(runs) == len(self.days) and all(run.state in FINISHED for run in runs.values())

    def summary(self, runs: dict[str, DayRun]) -> str:
        done = sum(run.state == "success" for run in runs.values())
        failed = sum(run.state == "failed" for run in runs.values())
        retrying = sum(run.retrying for run in runs.values())
        running = sum(run.state == "running" and not run.retrying for run in runs.values())
        waiting = len(self.days) - done - failed - retrying - running
        return (
            f"{done} of {plural(len(self.days), self.unit)} done, {running} running, {retrying} retrying, "
            f"{failed} failed, {waiting} waiting"
        )


def _when(text: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def backfill_runs(
    api: AirflowApi, dag_id: str, days: set[str], before: dict[str, DayRun] | None = None
) -> dict[str, DayRun]:
    """The DAG's runs of those days with their tasks' states: asked of the runs that run now or
    finished since `before` (the last poll's), kept for the others (queued, or long finished)."""
    before = before or {}
    listed: list[dict] = []
    while True:  # a page at a time: Airflow answers at most 100 runs per request
        page = api.call(
            "GET",
            f"/dags/{dag_id}/dagRuns",
            logical_date_gte=f"{min(days)}T00:00:00Z",
            logical_date_lte=f"{max(days)}T00:00:00Z",
            order_by="logical_date",
            limit="100",
            offset=str(len(listed)),
        )
        listed += page["dag_runs"]
        if not page["dag_runs"] or len(listed) >= page.get("total_entries", 0):
            break
    runs: dict[str, DayRun] = {}
    for run in listed:
        day, state = (run.get("logical_date") or "")[:10], run["state"]
        if day not in days:
            continue
        known = before.get(day)
        if state == "queued" or (known is not None and known.state == state and state in FINISHED):
            runs[day] = DayRun(state, known.tasks if known is not None and state != "queued" else ())
            continue
        quoted = urllib.parse.quote(run["dag_run_id"], safe="")
        instances = api.call("GET", f"/dags/{dag_id}/dagRuns/{quoted}/taskInstances", limit="100")["task_instances"]
        tasks = tuple(
            TaskRun(
                ti["task_id"],
                ti.get("state"),
                ti.get("try_number") or 0,
                _when(ti.get("start_date")),
                ti.get("duration"),
            )
            for ti in sorted(instances, key=lambda ti: (ti.get("start_date") or "~", ti["task_id"]))
        )
        runs[day] = DayRun(state, tasks)
    return runs


@dataclass(frozen=True)
class Polling:
    """How `backfill --wait` polls: every `interval_s`; after a failed poll (a timeout on a busy machine,
    an error 5xx) again while Airflow's API server answers, for at most `give_up_s` of failures in a row.
    The clock and the sleep are the tests' to replace."""

    interval_s: float = 2.0
    give_up_s: float = 300.0
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


# A poll that failed this way may pass the next time: the request timed out, the connection dropped.
TRANSIENT = (OSError, http.client.HTTPException)


def wait_for_backfill(
    api: AirflowApi, dag_id: str, days: set[str], unit: str, progress: LiveProgress, polling: Polling | None = None
) -> dict[str, DayRun]:
    """Poll until every run of the range has finished, showing its progress; the runs as they ended.
    A failed poll is retried (said once, and live as a running task) while Airflow's API server
    answers; a ConfigError once it stops answering, refuses the poll (4xx) or fails for too long."""
    polling = polling or Polling()
    started = polling.clock()
    watch = BackfillWatch(dag_id, days, unit, progress)
    runs: dict[str, DayRun] = {}
    failing_since: float | None = None
    retrying: Task | None = None
    try:
        while True:
            try:
                runs = backfill_runs(api, dag_id, days, runs)
            except (*TRANSIENT, ApiError) as exc:
                if isinstance(exc, ApiError) and exc.status < 500:
                    raise
                if not answers():
                    raise ConfigError(
                        f"Airflow stopped answering on {api_url()} while the backfill ran",
                        "start it again: make airflow; the backfill resumes once it runs",
                    ) from None
                now = polling.clock()
                said = f"HTTP {exc.status}" if isinstance(exc, ApiError) else type(exc).__name__
                cause = f"{said}: {exc.detail if isinstance(exc, ApiError) else exc}"
                if failing_since is None:
                    failing_since = now
                    progress.print(
                        f"  a poll of Airflow's API failed ({cause}); its API server answers: polling again every "
                        f"{duration(polling.interval_s)} for up to {_span(polling.give_up_s)}"
                    )
                    retrying = progress.start("polling Airflow's API again after a failure")
                elif now - failing_since >= polling.give_up_s:
                    raise ConfigError(
                        f"Airflow's API failed every poll for {duration(now - failing_since)}, last: {cause}",
                        f"see the API server's log in {home() / 'logs' / 'components'}",
                    ) from None
            else:
                if retrying is not None:
                    retrying.finish(f"  Airflow's API answers again after {duration(polling.clock() - failing_since)}")
                    failing_since, retrying = None, None
                watch.show(runs, dt.datetime.now(dt.UTC))
                if watch.finished(runs):
                    break
            polling.sleep(polling.interval_s)
    finally:
        watch.close()
        if retrying is not None:
            retrying.finish()
    progress.print(f"  {watch.summary(runs)} after {duration(polling.clock() - started)}")
    return runs


def _active_runs(api: AirflowApi, dag_id: str) -> int:
    return api.call("GET", f"/dags/{dag_id}/dagRuns", state=["queued", "running"], limit="1").get("total_entries", 0)


def _pause_when_idle(api: AirflowApi, dag_id: str, progress: LiveProgress) -> None:
    """Scheduled runs are off: pause the DAG again (no next run promised), unless other runs of it
    (triggered meanwhile) still need it unpaused.

    Airflow has no "pause if idle": a run triggered or a backfill created between the look at the
    active runs and the pause would wait paused. So the runs are looked at again after the pause, and
    the DAG unpaused again if any came. The window that remains: a run created after the second look
    by someone who saw the DAG unpaused before the pause (another `nw airflow backfill` unpauses only
    a DAG it finds paused); its runs wait, queued, until the DAG is unpaused (its toggle in the UI)."""
    active = _active_runs(api, dag_id)
    if active:
        progress.print(f"{dag_id} stays unpaused: {plural(active, 'other run')} still to finish")
        return
    api.call("PATCH", f"/dags/{dag_id}", body={"is_paused": True})
    came = _active_runs(api, dag_id)
    if came:
        api.call("PATCH", f"/dags/{dag_id}", body={"is_paused": False})
        progress.print(f"{dag_id} unpaused again: {plural(came, 'run')} of it started while it was being paused")
        return
    progress.print(f"{dag_id} paused again (scheduled runs are off: AIRFLOW_SCHEDULED_RUNS)")


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
