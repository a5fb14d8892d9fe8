"""Airflow past one machine: the EdgeExecutor, its metadata in Postgres, and workers.

`NW_AIRFLOW_EXECUTOR=local` (the default) is `make airflow` on one machine: LocalExecutor,
metadata in SQLite. `NW_AIRFLOW_EXECUTOR=edge` is the distributed mode: the controller (API
server, scheduler, dag processor, triggerer; `nw airflow up`) keeps Airflow's metadata in
Postgres, and workers (`nw airflow worker`, one per working copy, on any machine) pull tasks
from the API server over HTTP. A worker needs no broker and no access to Airflow's database:
it shares only the API server, the state database, the lake and the warehouses, all named by
settings. Why EdgeExecutor rather than Celery: no broker to run and secure, the worker's only
link to the controller is the HTTP API it already uses for task state (Airflow 3's execution
API), and a worker that dies is found by the same heartbeat timeout either way.

`nw airflow up --workers N` also starts N workers on this machine, each in a working copy of its
own (the checkout's files, its installed environments linked as a container image would share
them) with its own scratch directory, so nothing passes between them but those services.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path

from northwind_elt.core import settings, state
from northwind_elt.core.errors import ConfigError

EXECUTOR_ENV = "NW_AIRFLOW_EXECUTOR"
EDGE_EXECUTOR = "airflow.providers.edge3.executors.EdgeExecutor"
METADATA_PREFIX = "AIRFLOW_PG"
SECRET_ENV = "AIRFLOW__API_AUTH__JWT_SECRET"  # noqa: S105 (a variable name)
METADATA_ENV = "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"
HEARTBEAT_ENV = "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT"
# One task at a time per working copy: a copy's Meltano run folders take one run of a job at a
# time (the meltano-<job> lock), and a task is a whole Meltano job using a core by itself. Add
# working copies (machines) to add slots.
DEFAULT_WORKER_CONCURRENCY = 1
# Days of one day-protocol DAG running at once across the workers.
DEFAULT_MAX_ACTIVE_RUNS = 4


def distributed() -> bool:
    mode = (os.environ.get(EXECUTOR_ENV) or "local").strip().lower()
    if mode not in ("local", "edge"):
        raise ConfigError(
            f"{EXECUTOR_ENV}={mode!r}: Airflow's executor here is 'local' (one machine) or 'edge' (workers)",
            f"fix {EXECUTOR_ENV} in {settings.project_root() / '.env'}",
        )
    return mode == "edge"


def controller_url(api_url: str) -> str:
    """The API server as workers reach it: NW_AIRFLOW_URL, else this machine's."""
    return (os.environ.get("NW_AIRFLOW_URL") or api_url).rstrip("/")


def metadata_url() -> str:
    """Airflow's metadata database: AIRFLOW__DATABASE__SQL_ALCHEMY_CONN, else AIRFLOW_PG_* (the
    embedded server's `airflow` database, created by `nw db up` once AIRFLOW_PG_PASSWORD is set)."""
    if os.environ.get(METADATA_ENV):
        return os.environ[METADATA_ENV]
    if not os.environ.get(f"{METADATA_PREFIX}_PASSWORD"):
        raise ConfigError(
            f"{EXECUTOR_ENV}=edge keeps Airflow's metadata in Postgres, and neither {METADATA_ENV} nor "
            f"{METADATA_PREFIX}_PASSWORD is set",
            f"set {METADATA_PREFIX}_PASSWORD in .env (then `nw db up` creates the database on the embedded "
            f"server), or {METADATA_ENV} to your Postgres",
        )
    conn = settings.pg_conn(METADATA_PREFIX)
    from urllib.parse import quote

    return (
        f"postgresql+psycopg2://{quote(conn.user, safe='')}:{quote(conn.password, safe='')}"
        f"@{conn.host}:{conn.port}/{quote(conn.dbname, safe='')}"
    )


def jwt_secret(home: Path) -> str:
    """The secret the controller and every worker sign and check task tokens with: the setting, or
    (one machine) a random one kept in AIRFLOW_HOME for the workers `up --workers` starts."""
    if os.environ.get(SECRET_ENV):
        return os.environ[SECRET_ENV]
    path = home / "jwt_secret"
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(secrets.token_urlsafe(32))
        tmp.chmod(0o600)
        os.replace(tmp, path)
    return path.read_text().strip()


def worker_secret() -> str:
    secret = os.environ.get(SECRET_ENV)
    if not secret:
        raise ConfigError(
            f"a worker signs its requests with the controller's secret, and {SECRET_ENV} is not set",
            f"set {SECRET_ENV} in this machine's .env to the controller's (on the controller: "
            f"its .env, or the file jwt_secret in its AIRFLOW_HOME)",
        )
    return secret


def edge_settings(role: str, api_url: str, home: Path) -> dict[str, str]:
    """Airflow's settings for the distributed mode: the controller's, or a worker's."""
    url = controller_url(api_url)
    values = {
        "AIRFLOW__CORE__EXECUTOR": EDGE_EXECUTOR,
        "AIRFLOW__EDGE__API_ENABLED": "True",
        "AIRFLOW__EDGE__API_URL": f"{url}/edge_worker/v1/rpcapi",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
        "NW_DAG_MAX_ACTIVE_RUNS": os.environ.get("NW_DAG_MAX_ACTIVE_RUNS") or str(DEFAULT_MAX_ACTIVE_RUNS),
    }
    if role == "worker":
        values[SECRET_ENV] = worker_secret()
        return values
    values[SECRET_ENV] = jwt_secret(home)
    values[METADATA_ENV] = metadata_url()
    heartbeat = os.environ.get(HEARTBEAT_ENV, "300")
    if state.shared() and (not heartbeat.isdigit() or int(heartbeat) <= state.lease_seconds()):
        # A dead worker's task is retried once Airflow misses its heartbeat: by then the step's
        # lease must have expired, or the retry finds the day still held and fails again.
        raise ConfigError(
            f"{HEARTBEAT_ENV}={heartbeat} must be longer than NW_LEASE_SECONDS={state.lease_seconds()}",
            f"raise {HEARTBEAT_ENV} (Airflow's default is 300) or lower NW_LEASE_SECONDS in .env",
        )
    values[HEARTBEAT_ENV] = heartbeat
    return values


def require_shared_services() -> None:
    """Workers share only services: the state and the lake must be in them, not on a disk."""
    if not state.shared():
        raise ConfigError(
            f"{EXECUTOR_ENV}=edge runs steps on several machines, and the state (ledger, leases) is on "
            "this disk (NW_STATE_BACKEND=local): each worker would see its own",
            "set NW_STATE_BACKEND=postgres and NW_STATE_PG_PASSWORD in .env (README: past one machine)",
        )
    if not (os.environ.get("NW_LAKE_URL") or "").startswith("s3://"):
        raise ConfigError(
            f"{EXECUTOR_ENV}=edge runs steps on several machines, and the lake is on this disk (NW_LAKE_URL "
            "unset or a path): a load on one worker could not read another's extract",
            "set NW_LAKE_URL=s3://bucket/prefix and NW_LAKE_S3_* in .env (README: the lake: local disk or S3)",
        )


# -- working copies ------------------------------------------------------------------------
# What a machine has that is not the project's files: its installed environments. A working copy
# links them (read only, as a container image's layers), and writes everything else itself.
LINKED_ENVIRONMENTS = (".venv", ".venv-airflow")


def _project_files(root: Path) -> list[Path]:
    """The checkout's files as git sees them (tracked, and new ones it does not ignore): never what
    runs write (data/ output, .meltano, virtualenvs), which .gitignore lists."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=root,
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        raise ConfigError(
            f"{root} is not a git checkout: a worker's working copy is made of the files git lists",
            "run `nw airflow up --workers N` from a clone, or start each worker with `nw airflow worker` "
            "in a checkout of its own",
        ) from None
    return [Path(name) for name in listed.decode().split("\0") if name]


def prepare_working_copy(dest: Path) -> Path:
    """A fresh working copy of this checkout at dest: its files, and links to its environments."""
    root = settings.project_root()
    if dest.exists():
        shutil.rmtree(dest)
    for rel in _project_files(root):
        if (root / rel).is_file():  # not a file deleted from the work tree
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / rel, dest / rel)
    for name in LINKED_ENVIRONMENTS:
        if (root / name).exists():
            (dest / name).symlink_to(root / name)
    # Meltano's plugin virtualenvs, each linked; the copy's .meltano (run folders, logs) is its own.
    for venv in (root / ".meltano").glob("*/*/venv"):
        link = dest / venv.relative_to(root)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(venv)
    return dest


def worker_environment(name: str, copy: Path, scratch: Path) -> dict[str, str]:
    """A local worker's environment: this one's settings, its own copy, scratch and host id."""
    return {
        **os.environ,
        "MELTANO_PROJECT_ROOT": str(copy),
        "NW_PROJECT_ROOT": str(copy),
        "NW_DATA_DIR": str(scratch),
        "NW_HOST_ID": name,
        "AIRFLOW_HOME": str(copy / ".airflow"),
        # Stopped with the controller (Ctrl-C): its running steps get a SIGTERM after 30 s, so
        # they record themselves as interrupted, before `up` gives up on the worker (60 s).
        "AIRFLOW__EDGE__DRAIN_TIMEOUT_SEC": os.environ.get("AIRFLOW__EDGE__DRAIN_TIMEOUT_SEC", "30"),
        "AIRFLOW__EDGE__DRAIN_KILL_GRACE_SEC": os.environ.get("AIRFLOW__EDGE__DRAIN_KILL_GRACE_SEC", "20"),
    }
