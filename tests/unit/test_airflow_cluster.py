"""The distributed mode's settings and working copies (northwind_elt/entry/airflow_cluster.py), in
process; the mode itself runs in tests/distributed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from northwind_elt.core.errors import ConfigError
from northwind_elt.entry import airflow_cluster, airflow_local

EDGE = {
    "NW_AIRFLOW_EXECUTOR": "edge",
    "NW_STATE_BACKEND": "postgres",
    "NW_LAKE_URL": "s3://lake/nw",
    "AIRFLOW_PG_PASSWORD": "p@ss/word",
    "AIRFLOW_PG_PORT": "5433",
}


@pytest.fixture
def edge(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name, value in EDGE.items():
        monkeypatch.setenv(name, value)
    for name in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__API_AUTH__JWT_SECRET", "NW_AIRFLOW_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    return tmp_path / "airflow"


def test_the_executor_setting_is_local_or_edge(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NW_AIRFLOW_EXECUTOR", raising=False)
    assert airflow_cluster.distributed() is False
    monkeypatch.setenv("NW_AIRFLOW_EXECUTOR", "celery")
    with pytest.raises(ConfigError, match=r"'local' .* or 'edge'"):
        airflow_cluster.distributed()


def test_one_machine_keeps_the_local_executor_and_days_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NW_AIRFLOW_EXECUTOR", raising=False)
    monkeypatch.delenv("AIRFLOW__CORE__PARALLELISM", raising=False)
    monkeypatch.delenv("NW_DAG_MAX_ACTIVE_RUNS", raising=False)
    env = airflow_local.environment()
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor" and env["NW_DAG_MAX_ACTIVE_RUNS"] == "1"
    assert env["AIRFLOW__CORE__PARALLELISM"] == str(os.cpu_count() or 2)


def test_the_controller_keeps_its_metadata_in_postgres_and_never_prints_the_password(edge: Path) -> None:
    env = airflow_local.environment()
    assert env["AIRFLOW__CORE__EXECUTOR"] == airflow_cluster.EDGE_EXECUTOR
    url = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert url == "postgresql+psycopg2://airflow:p%40ss%2Fword@127.0.0.1:5433/airflow"
    assert "p%40ss" not in airflow_local._metadata_description(env)
    assert airflow_local._metadata_description(env) == "postgresql+psycopg2://airflow@127.0.0.1:5433/airflow"
    assert env["NW_DAG_MAX_ACTIVE_RUNS"] == "4"
    assert env["AIRFLOW__EDGE__API_URL"].endswith("/edge_worker/v1/rpcapi")
    # One secret for the controller's components, kept for the workers `up --workers` starts.
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == (edge / "jwt_secret").read_text().strip()
    assert airflow_local.environment()["AIRFLOW__API_AUTH__JWT_SECRET"] == env["AIRFLOW__API_AUTH__JWT_SECRET"]
    assert (edge / "jwt_secret").stat().st_mode & 0o777 == 0o600


def test_the_metadata_database_must_be_named(edge: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_PG_PASSWORD")
    with pytest.raises(ConfigError, match="AIRFLOW_PG_PASSWORD") as err:
        airflow_local.environment()
    assert "nw db up" in err.value.fix
    monkeypatch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "postgresql+psycopg2://a:b@db/airflow")
    assert airflow_local.environment()["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("@db/airflow")


def test_a_dead_workers_retry_comes_after_its_lease_expired(edge: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NW_LEASE_SECONDS", "60")
    monkeypatch.setenv("AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT", "60")
    with pytest.raises(ConfigError, match="must be longer than NW_LEASE_SECONDS=60"):
        airflow_local.environment()
    monkeypatch.setenv("AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT", "61")
    assert airflow_local.environment()["AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT"] == "61"


def test_a_worker_needs_the_controllers_secret_and_no_database(edge: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="AIRFLOW__API_AUTH__JWT_SECRET is not set"):
        airflow_local.environment("worker")
    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "shared")
    monkeypatch.setenv("NW_AIRFLOW_URL", "http://controller:8080/")
    env = airflow_local.environment("worker")
    assert "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" not in env
    assert env["AIRFLOW__EDGE__API_URL"] == "http://controller:8080/edge_worker/v1/rpcapi"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://controller:8080/execution/"


@pytest.mark.parametrize(
    ("setting", "value", "named"),
    [("NW_STATE_BACKEND", "local", "NW_STATE_BACKEND=postgres"), ("NW_LAKE_URL", "/mnt/lake", "NW_LAKE_URL=s3://")],
)
def test_workers_share_only_services_so_state_and_lake_must_be_in_them(
    edge: Path, monkeypatch: pytest.MonkeyPatch, setting: str, value: str, named: str
) -> None:
    monkeypatch.setenv(setting, value)
    with pytest.raises(ConfigError) as err:
        airflow_cluster.require_shared_services()
    assert named in err.value.fix


def test_an_empty_airflow_setting_is_airflows_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NW_AIRFLOW_EXECUTOR", raising=False)
    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "")  # docker compose's value for one not set
    assert "AIRFLOW__API_AUTH__JWT_SECRET" not in airflow_local.environment()


def test_a_working_copy_has_the_checkouts_files_its_own_run_folders_and_linked_environments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "checkout"
    for name, text in {
        "meltano.yml": "project",
        "transform/dbt_project.yml": "dbt",
        "data/order_details.csv": "a,b\n",
        "notes.txt": "new, not yet committed",
        ".gitignore": "data/output/\n.meltano/\n.venv/\n",
        "data/output/2024-01-15/x.csv": "written by a run",
        ".meltano/run/tap/config.json": "{}",
        ".meltano/extractors/tap-x/venv/bin/python": "",
        ".venv/bin/nw": "",
    }.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(["git", "add", "meltano.yml", "transform", "data/order_details.csv", ".gitignore"], cwd=root)
    monkeypatch.setenv("MELTANO_PROJECT_ROOT", str(root))
    copy = airflow_cluster.prepare_working_copy(tmp_path / "worker-1" / "project")
    assert (copy / "meltano.yml").read_text() == "project" and (copy / "notes.txt").exists()
    assert (copy / "data" / "order_details.csv").exists() and not (copy / "data" / "output").exists()
    assert not (copy / ".meltano" / "run").exists()  # a worker's own
    assert (copy / ".venv").resolve() == root / ".venv"
    assert (copy / ".meltano" / "extractors" / "tap-x" / "venv").resolve() == root / ".meltano/extractors/tap-x/venv"
    assert not (copy / ".meltano").is_symlink()
    # Prepared again: the copy is fresh, whatever the last run left in it.
    (copy / "stale.txt").write_text("left")
    airflow_cluster.prepare_working_copy(copy)
    assert not (copy / "stale.txt").exists()


def test_a_working_copy_needs_a_git_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MELTANO_PROJECT_ROOT", str(tmp_path))
    with pytest.raises(ConfigError, match="not a git checkout"):
        airflow_cluster.prepare_working_copy(tmp_path / "copy")
