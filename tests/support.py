"""Shared test helpers: the project's commands against a private server and data directory.

Imported by the test modules (and by conftest.py for its fixtures); never the other way.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

PROJECT = Path(__file__).resolve().parent.parent
BIN = PROJECT / ".venv" / "bin"
NW = str(BIN / "nw")
MELTANO = str(BIN / "meltano")
SOURCE_CSV = PROJECT / "data" / "order_details.csv"
# The Northwind steps up to raw, for tests that check raw only (no dbt, no export): Pipeline.load_ok.
LOAD_STEPS = ("extract-postgres", "extract-csv", "load")
EXTRACTS = LOAD_STEPS[:2]
SOURCE_DUMP = PROJECT / "data" / "northwind.sql"
ORDER_DETAILS_COLUMNS = {
    "order_id": "integer",
    "product_id": "integer",
    "unit_price": "number",
    "quantity": "integer",
    "discount": "number",
}


def partition_file(data_dir: Path, dataset: str, table: str, day: str) -> Path:
    """The day's published file of a table (its name is the attempt's), as the step manifest names it."""
    from northwind_elt.core.day import path_component

    folder = data_dir / "csv" / day if dataset == "csv" else data_dir / dataset / path_component(table) / day
    step = "extract-csv" if dataset == "csv" else f"extract-{dataset}"
    step_manifest = data_dir / "_manifests" / day / f"{step}.json"
    if step_manifest.exists():
        return folder / json.loads(step_manifest.read_text())["tables"][table]["file"]
    return folder / json.loads((folder / f"{path_component(table)}.manifest.json").read_text())["file"]


# The days the session's `northwind_day` and `people_day` fixtures run (tests/conftest.py).
NORTHWIND_DAY, PEOPLE_DAY = "2024-01-15", "2024-09-01"

# The shared state in the session's Postgres (the `state_env` fixture, tests/conftest.py).
STATE = {
    "NW_STATE_BACKEND": "postgres",
    "NW_STATE_PG_USER": "nw_state",
    "NW_STATE_PG_PASSWORD": "test-state-secret",
    "NW_STATE_PG_DATABASE": "nw_state",
    "NW_LEASE_SECONDS": "20",  # far beyond a keeper's renewal (every 5 s), even on a loaded machine
}


def machine(env: dict[str, str], name: str, root: Path) -> Pipeline:
    """A "machine" of a cluster: its own host id and data directory (staging, logs, lock files)."""
    data_dir = root / name / "data"
    return Pipeline({**env, "NW_HOST_ID": name, "NW_DATA_DIR": str(data_dir)}, data_dir)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def csv_env(path: Path) -> dict[str, str]:
    """Point the Northwind CSV tap at another file (Meltano reads TAP_TYPED_CSV_FILES as JSON)."""
    return {
        "TAP_TYPED_CSV_FILES": json.dumps(
            [
                {
                    "stream": "order_details",
                    "path": str(path),
                    "key": ["order_id", "product_id"],
                    "columns": ORDER_DETAILS_COLUMNS,
                }
            ]
        )
    }


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        return list(csv.DictReader(handle))


def wait_for(condition: Callable[[], bool], what: str, proc: subprocess.Popen | None = None, limit_s: float = 300):
    """Wait for an event (a file, a lock wait) the program under test produces.

    The limit only turns a hang into a failure; nothing here depends on how fast it happens.
    """
    deadline = time.monotonic() + limit_s
    while not condition():
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"process ended before {what}:\n{out[-3000:]}")
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.05)


@dataclass
class Pipeline:
    """Runs the project's commands against the session's server and data directory."""

    env: dict[str, str]
    data_dir: Path
    runs: list[subprocess.CompletedProcess] = field(default_factory=list)
    meltano_migrated: bool = field(default=False, repr=False)

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

    def start(self, *args: str, extra_env: dict[str, str] | None = None, **kwargs) -> subprocess.Popen:
        """`nw ARGS` in the background, in its own process group."""
        return subprocess.Popen(
            [NW, *args],
            env={**self.env, **(extra_env or {})},
            cwd=PROJECT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            **kwargs,
        )

    def start_meltano(self, *args: str, day: str) -> subprocess.Popen:
        return subprocess.Popen(
            [MELTANO, *args],
            env={**self.env, "RUN_DATE": day},
            cwd=PROJECT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    def meltano(self, *args: str, day: str | None = None, extra_env: dict[str, str] | None = None):
        env = {**self.env, **(extra_env or {})}
        if day is not None:
            env["RUN_DATE"] = day
        return subprocess.run([MELTANO, *args], env=env, cwd=PROJECT, capture_output=True, text=True, timeout=600)

    def migrate_meltano_database(self) -> None:
        """Meltano's system database up to date before runs start side by side: every Meltano command
        migrates it first, and two first commands on a new database race (MigrationError)."""
        if not self.meltano_migrated:
            upgraded = self.meltano("upgrade", "database")
            assert upgraded.returncode == 0, upgraded.stdout[-3000:] + upgraded.stderr[-3000:]
            self.meltano_migrated = True

    def extract_ok(self, day: str) -> None:
        """The day's two Northwind extracts side by side, as its DAG runs them: on two cores, about one
        extract less of wall time than one after the other. Each must succeed."""
        self.migrate_meltano_database()
        started = [self.start("--date", day, "run", step) for step in EXTRACTS]
        outputs = [proc.communicate(timeout=600)[0] for proc in started]
        for step, proc, output in zip(EXTRACTS, started, outputs, strict=True):
            assert proc.returncode == 0, f"{step} {day} failed:\n{output[-5000:]}"

    def load_ok(self, day: str) -> None:
        """LOAD_STEPS for the day: both extracts (extract_ok), then the load."""
        self.extract_ok(day)
        self.run_ok("load", day)

    def connect(self, prefix: str) -> psycopg.Connection:
        """An autocommit connection to the database of a variable prefix (SOURCE_PG, PADAM_WH_PG, ...)."""
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
        return self.connect("ANALYTICS_PG")

    def source(self) -> psycopg.Connection:
        return self.connect("SOURCE_PG")

    def admin(self, dbname: str = "northwind", autocommit: bool = True) -> psycopg.Connection:
        """Superuser over the embedded server's Unix socket, to change things like an app would."""
        sock = Path(tempfile.gettempdir()) / f"nw-pg-{self.env['PG_PORT']}"
        return psycopg.connect(
            host=str(sock), port=self.env["PG_PORT"], user="postgres", dbname=dbname, autocommit=autocommit
        )

    def output(self, day: str, suffix: str) -> Path:
        return self.data_dir / "output" / day / f"orders_with_details.{suffix}"

    def status(self, day: str) -> str:
        return self.nw("--date", day, "status").stdout

    def waiting_on_a_lock(self, user: str) -> bool:
        """Whether a backend of `user` is blocked on a table lock (the test's sync point)."""
        with self.admin("postgres") as conn:
            return (
                conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE usename = %s AND wait_event_type = 'Lock'", [user]
                ).fetchone()[0]
                > 0
            )

    @contextmanager
    def table_locked(self, dbname: str, table: str, mode: str = "ACCESS EXCLUSIVE") -> Iterator[None]:
        """Hold a lock on a table so a run blocks on it at a known point, until released."""
        conn = self.admin(dbname, autocommit=False)
        try:
            conn.execute(f"LOCK TABLE {table} IN {mode} MODE")
            yield
        finally:
            conn.rollback()
            conn.close()


def make_test_env(root: Path, port: str) -> dict[str, str]:
    return {
        **{
            k: v
            for k, v in os.environ.items()
            if not k.startswith(
                ("SOURCE_PG_", "ANALYTICS_PG_", "PADAM_", "RANDOM_MAIN", "RUN_DATE", "TAP_", "ADS_", "NW_LAKE_")
            )
        },
        "MELTANO_PROJECT_ROOT": str(PROJECT),
        "NW_PROJECT_ROOT": str(PROJECT),
        "PATH": f"{BIN}:{os.environ['PATH']}",
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
        "PEOPLE_PG_HOST": "127.0.0.1",
        "PEOPLE_PG_PORT": port,
        "PEOPLE_PG_USER": "people",
        "PEOPLE_PG_PASSWORD": "test-people-secret",
        "PEOPLE_PG_DATABASE": "people",
        "PADAM_PROD_PG_HOST": "127.0.0.1",
        "PADAM_PROD_PG_PORT": port,
        "PADAM_PROD_PG_USER": "padam_production",
        "PADAM_PROD_PG_PASSWORD": "test-padam-production-secret",
        "PADAM_PROD_PG_DATABASE": "padam_production",
        "PADAM_WH_PG_HOST": "127.0.0.1",
        "PADAM_WH_PG_PORT": port,
        "PADAM_WH_PG_USER": "padam_warehouse",
        "PADAM_WH_PG_PASSWORD": "test-padam-warehouse-secret",
        "PADAM_WH_PG_DATABASE": "padam_warehouse",
        "ADS_PG_HOST": "127.0.0.1",
        "ADS_PG_PORT": port,
        "ADS_PG_USER": "ads",
        "ADS_PG_PASSWORD": "test-ads-secret",
        "ADS_PG_DATABASE": "ads",
        "RUN_DATE_MAX_FUTURE_DAYS": "1",
    }
