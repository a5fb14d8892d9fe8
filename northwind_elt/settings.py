"""Connection and location settings, read from the environment.

The same variable names are used by the embedded default, Meltano (`meltano.yml`),
Docker (`docker-compose.yml`) and Airflow, so one `.env` drives all of them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def project_root() -> Path:
    root = os.environ.get("MELTANO_PROJECT_ROOT") or os.environ.get("NW_PROJECT_ROOT")
    if root:
        return Path(root).resolve()
    # Fall back to the checkout this package lives in (it is installed editable).
    return Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    configured = os.environ.get("NW_DATA_DIR")
    return Path(configured).resolve() if configured else project_root() / "data"


@dataclass(frozen=True)
class PgConn:
    """One Postgres connection target; the password never appears in `describe()`."""

    host: str
    port: int
    user: str
    password: str
    dbname: str

    def conninfo(self) -> str:
        from psycopg.conninfo import make_conninfo

        return make_conninfo(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=self.dbname,
            connect_timeout=10,
            application_name="northwind-elt",
        )

    def describe(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.dbname}"


def _pg(prefix: str, default_user: str, default_db: str) -> PgConn:
    env = os.environ
    return PgConn(
        host=env.get(f"{prefix}_HOST", "127.0.0.1"),
        port=int(env.get(f"{prefix}_PORT", env.get("PG_PORT", "55432"))),
        user=env.get(f"{prefix}_USER", default_user),
        password=env.get(f"{prefix}_PASSWORD", ""),
        dbname=env.get(f"{prefix}_DATABASE", default_db),
    )


def source_pg() -> PgConn:
    return _pg("SOURCE_PG", "northwind_reader", "northwind")


def analytics_pg() -> PgConn:
    return _pg("ANALYTICS_PG", "analytics", "analytics")
