"""Connection and location settings, read from the environment.

The same variable names are used by the embedded default, Meltano (`meltano.yml`),
Docker (`docker-compose.yml`) and Airflow, so one `.env` drives all of them.
"""

from __future__ import annotations

import os
import re
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
    """The variables a database connection needs set; its port is not one of them: unset or empty,
    it is PG_PORT's (pg_conn checks whichever applies and names it)."""
    return [f"{prefix}_{part}" for part in ("HOST", "USER", "PASSWORD", "DATABASE")]


def _port(name: str, default: str) -> int:
    from northwind_elt.core.errors import ConfigError

    raw = os.environ.get(name, default)
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ConfigError(f"{name}={raw!r} is not a TCP port", f"set {name} to a number from 1 to 65535 in .env")
    return int(raw)


# The embedded server's port: every database on it follows this one variable. A database's own
# <PREFIX>_PORT is for a server of its own; .env.example sets it to ${PG_PORT} (python-dotenv
# interpolates it for nw and Meltano alike), and unset or empty it is PG_PORT here, in the
# derived values nw passes to Meltano (`derived_ports`) and in dbt's profiles. Meltano 4.4 itself
# cannot default one variable to another for an inherited plugin (tap-postgres-arrow--padam,
# target-postgres-arrow--people...): an unset variable gives an empty setting.
EMBEDDED_PORT_ENV = "PG_PORT"
DEFAULT_EMBEDDED_PORT = "55432"
LOCAL_HOSTS = ("127.0.0.1", "localhost")


def embedded_port() -> int:
    return _port(EMBEDDED_PORT_ENV, DEFAULT_EMBEDDED_PORT)


def port_variable(prefix: str) -> str:
    """The variable that sets the connection's port: its own when set, else PG_PORT."""
    return f"{prefix}_PORT" if os.environ.get(f"{prefix}_PORT") else EMBEDDED_PORT_ENV


def ports_set_to(port: int) -> list[str]:
    """The per-database port variables set to this port itself (in .env or the environment), not
    as ${PG_PORT}: moving the embedded server off it leaves them behind unless they move too."""
    following = _following_pg_port()
    return [
        name
        for name in (f"{prefix}_PORT" for prefix in CONNECTIONS)
        if os.environ.get(name) == str(port) and name not in following
    ]


def _following_pg_port() -> set[str]:
    """The variables .env sets to ${PG_PORT} (or $PG_PORT), as written."""
    env_file = project_root() / ".env"
    if not env_file.is_file():
        return set()
    from dotenv import dotenv_values

    written = dotenv_values(env_file, interpolate=False)
    return {name for name, value in written.items() if value and re.fullmatch(r"\$\{?PG_PORT\}?", value.strip())}


def derived_ports() -> dict[str, str]:
    """{<PREFIX>_PORT: PG_PORT} for each database whose own port is unset or empty: what Meltano's
    plugins read (`value: $SOURCE_PG_PORT`...), given by nw to the runs it starts, so a .env
    without these lines works as one with `SOURCE_PG_PORT=${PG_PORT}`."""
    port = str(embedded_port())
    return {f"{prefix}_PORT": port for prefix in CONNECTIONS if not os.environ.get(f"{prefix}_PORT")}


def _pg(prefix: str, default_user: str, default_db: str) -> PgConn:
    env = os.environ
    return PgConn(
        host=env.get(f"{prefix}_HOST", "127.0.0.1"),
        port=_port(port_variable(prefix), DEFAULT_EMBEDDED_PORT),
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


# Words of a refused or failed connection (psycopg, botocore, requests), never of a refused login.
_UNREACHABLE = re.compile(
    r"Connection refused|could not connect|Could not connect to the endpoint|Failed to establish a new connection"
    r"|Is the server running on that host",
    re.I,
)


@dataclass(frozen=True)
class StandIn:
    """A local server the project starts itself, where the settings point at it."""

    what: str
    host: str
    port: int
    command: str

    def named_in(self, text: str) -> bool:
        """Whether a client's error names this address (URL, psycopg's and urllib3's wording)."""
        forms = (
            f"{self.host}:{self.port}",
            f'"{self.host}", port {self.port}',
            f"host='{self.host}', port={self.port}",
        )
        return any(form in text for form in forms)

    def fix(self) -> str:
        return f"start {self.what} ({self.host}:{self.port}): {self.command}"


def stand_ins() -> list[StandIn]:
    """The project's local stand-ins at the addresses the settings name: the embedded Postgres,
    the mock ads API and the embedded S3 server (ads bucket and lake), each with its start command."""
    from urllib.parse import urlsplit

    found = [StandIn("the project's embedded Postgres", host, embedded_port(), "nw db up") for host in LOCAL_HOSTS]
    for variable, what, command in (
        ("ADS_API_URL", "the project's mock ads API", "nw ads up"),
        ("ADS_S3_ENDPOINT_URL", "the project's embedded S3 server", "nw s3 up"),
        ("NW_LAKE_S3_ENDPOINT_URL", "the project's embedded S3 server", "nw s3 up"),
    ):
        try:
            url = urlsplit(os.environ.get(variable) or "")
            host, port = url.hostname, url.port
        except ValueError:  # a malformed URL: its own check names it
            continue
        if host in LOCAL_HOSTS and port:
            found.append(StandIn(what, host, port, command))
    return found


def stand_in_fix(text: str) -> str | None:
    """For a failure to reach a server that is one of the project's local stand-ins: how to start
    it (the settings are right, the server is stopped); None for anything else."""
    from northwind_elt.core.errors import ConfigError

    if not _UNREACHABLE.search(text):
        return None
    try:
        candidates = stand_ins()
    except ConfigError:  # a broken PG_PORT is reported by its own check, not instead of this failure
        return None
    return next((stand_in.fix() for stand_in in candidates if stand_in.named_in(text)), None)
