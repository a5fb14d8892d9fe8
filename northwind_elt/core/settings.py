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
    return Path(__file__).resolve().parents[2]


DATA_DIR_ENV = "NW_DATA_DIR"


def data_dir() -> Path:
    """NW_DATA_DIR (an absolute path), else the project's data/."""
    configured = os.environ.get(DATA_DIR_ENV)
    if not configured:
        return project_root() / "data"
    if not Path(configured).is_absolute():
        from northwind_elt.core.errors import ConfigError

        raise ConfigError(
            f"{DATA_DIR_ENV}={configured!r} is not an absolute path (the plugins build their folders from it)",
            f"set {DATA_DIR_ENV} to an absolute path in {project_root() / '.env'}, e.g. {project_root() / 'data'}",
        )
    return Path(configured).resolve()


def require(names: list[str], why: str) -> None:
    """Fail before any step starts when a variable the step needs is unset or empty."""
    from northwind_elt.core.errors import ConfigError

    missing = [name for name in names if not os.environ.get(name)]
    if missing:
        env_file = project_root() / ".env"
        raise ConfigError(
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set ({why})",
            f"set {' and '.join(missing)} in {env_file} (see .env.example for every variable)",
        )


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


def pg_variables(prefix: str) -> list[str]:
    return [f"{prefix}_{part}" for part in ("HOST", "PORT", "USER", "PASSWORD", "DATABASE")]


def _port(name: str, default: str) -> int:
    from northwind_elt.core.errors import ConfigError

    raw = os.environ.get(name, default)
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ConfigError(f"{name}={raw!r} is not a TCP port", f"set {name} to a number from 1 to 65535 in .env")
    return int(raw)


def _pg(prefix: str, default_user: str, default_db: str) -> PgConn:
    env = os.environ
    return PgConn(
        host=env.get(f"{prefix}_HOST", "127.0.0.1"),
        port=_port(f"{prefix}_PORT", env.get("PG_PORT", "55432")),
        user=env.get(f"{prefix}_USER", default_user),
        password=env.get(f"{prefix}_PASSWORD", ""),
        dbname=env.get(f"{prefix}_DATABASE", default_db),
    )


# Each connection's variable prefix: what it is, and the default role and database of the
# embedded server.
CONNECTIONS = {
    "SOURCE_PG": ("source database", "northwind_reader", "northwind"),
    "ANALYTICS_PG": ("analytics database", "analytics", "analytics"),
    "PEOPLE_PG": ("people database", "people", "people"),
    "PADAM_PROD_PG": ("PADAM production database", "padam_production", "padam_production"),
    "PADAM_WH_PG": ("PADAM warehouse database", "padam_warehouse", "padam_warehouse"),
    "ADS_PG": ("ads database", "ads", "ads"),
    "NW_STATE_PG": ("state database", "nw_state", "nw_state"),
    "AIRFLOW_PG": ("Airflow metadata database", "airflow", "airflow"),
}
# The databases the project owns (created on the embedded server, each with its owner role).
WAREHOUSES = ("ANALYTICS_PG", "PEOPLE_PG", "PADAM_PROD_PG", "PADAM_WH_PG", "ADS_PG", "NW_STATE_PG", "AIRFLOW_PG")
# Those only a mode past one machine uses (created once their password is set).
OPTIONAL_DATABASES = ("NW_STATE_PG", "AIRFLOW_PG")


def pg_conn(prefix: str) -> PgConn:
    _, user, database = CONNECTIONS[prefix]
    return _pg(prefix, user, database)


def describe_conn(prefix: str) -> str:
    """'the source database postgresql://user@host:port/db (SOURCE_PG_* in .env)'."""
    return f"the {CONNECTIONS[prefix][0]} {pg_conn(prefix).describe()} ({prefix}_* in .env)"
