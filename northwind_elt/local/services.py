"""The local servers the project starts and stops: the mock ads API (`nw ads up|down`) and the
embedded S3 server (`nw s3 up|down`, also started by `nw ads up`).

Each runs detached (its own session, so it outlives `nw`), logs to `<folder>/<name>.log` and is
known by its pid file beside the log; the folder is `$NW_DATA_DIR/services/` (the S3 server, a
project service) or `$NW_DATA_DIR/ads/services/` (the ads API). A server counts as started only
once it is ready: its own check (the S3 server: a file written and read back), else its URL
answers HTTP. One that exits first, or is not ready in time, is reported with the end of its log.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from northwind_elt.core import settings
from northwind_elt.core.net import answers, port_taken

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0


class ServiceError(RuntimeError):
    pass


@dataclass(frozen=True)
class Service:
    name: str  # "api" or "s3"
    what: str  # for messages
    url: str  # answers HTTP once it listens
    port: int
    ready: Callable[[], bool] | None = None  # a real check that it serves; default: the URL answers
    home: str = "services"  # the folder of its pid file and log, under $NW_DATA_DIR
    commands: str = "nw s3"  # the command group that starts (up) and stops (down) it

    @property
    def folder(self) -> Path:
        return settings.data_dir() / self.home

    @property
    def pid_file(self) -> Path:
        return self.folder / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.folder / f"{self.name}.log"


def running_pid(service: Service) -> int | None:
    """The pid of the server this project started, if it still runs."""
    try:
        pid = int(service.pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        proc = psutil.Process(pid)
        # A reused pid is not ours: the pid file also holds the process's start time.
        if f"{proc.create_time():.2f}" != service.pid_file.read_text().split()[1]:
            return None
        return pid if proc.status() != psutil.STATUS_ZOMBIE else None
    except (psutil.Error, IndexError, OSError):
        return None


def is_ready(service: Service) -> bool:
    return service.ready() if service.ready is not None else answers(service.url)


def start(service: Service, argv: list[str] | Callable[[], list[str]]) -> str:
    """Start the server unless it runs; a message saying what happened.

    `argv` may be a function: it is called only when the server is really started.
    """
    pid = running_pid(service)
    if pid is not None:
        if _wait_ready(service, lambda: running_pid(service) is not None):
            return f"{service.what} is running on {service.url} (process {pid})"
        raise ServiceError(
            f"the {service.what} runs (process {pid}) but is not ready on {service.url} after {START_TIMEOUT_S:.0f} s; "
            f"{_log_tail(service)}\nFix: {service.commands} down, then {service.commands} up"
        )
    if port_taken(service.port):
        if answers(service.url):
            return f"{service.what}: {service.url} already answers (not started by this project; used as is)"
        raise ServiceError(
            f"port {service.port} on 127.0.0.1 is in use by another program, so the {service.what} cannot listen "
            f"there. Change the port in .env, or stop that program."
        )
    if callable(argv):
        argv = argv()
    service.folder.mkdir(parents=True, exist_ok=True)
    with service.log_file.open("ab") as log:
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=settings.project_root(),
        )
    service.pid_file.write_text(f"{proc.pid} {psutil.Process(proc.pid).create_time():.2f}\n")
    if not _wait_ready(service, lambda: proc.poll() is None):
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()
        service.pid_file.unlink(missing_ok=True)
        raise ServiceError(f"the {service.what} did not start on {service.url}; {_log_tail(service)}")
    return f"{service.what} started on {service.url} (process {proc.pid}, log {service.log_file})"


def _wait_ready(service: Service, alive: Callable[[], bool]) -> bool:
    """Wait until the server is ready: False once it has exited or START_TIMEOUT_S has passed."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while not is_ready(service):
        if not alive() or time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _log_tail(service: Service) -> str:
    try:
        tail = service.log_file.read_text(errors="replace")[-1500:].strip() or "(no output)"
    except OSError:
        tail = "(no log)"
    return f"its log {service.log_file}:\n{tail}"


def stop(service: Service) -> str:
    pid = running_pid(service)
    if pid is None:
        service.pid_file.unlink(missing_ok=True)
        return f"{service.what} is not running"
    proc = psutil.Process(pid)
    proc.terminate()
    killed = ""
    try:
        proc.wait(STOP_TIMEOUT_S)
    except psutil.TimeoutExpired:
        # SeaweedFS's graceful HTTP drain sometimes waits 30 s on a stuck connection; what it
        # acknowledged is already written to its files, so a kill loses nothing.
        proc.kill()
        proc.wait(STOP_TIMEOUT_S)
        killed = f", killed: still running {STOP_TIMEOUT_S:.0f} s after SIGTERM"
    service.pid_file.unlink(missing_ok=True)
    return f"{service.what} stopped (process {pid}{killed})"


def api_command(port: int, fixture: Path | None) -> list[str]:
    argv = [sys.executable, "-m", "northwind_elt.local.ads_api", "--host", "127.0.0.1", "--port", str(port)]
    return argv + (["--fixture", str(fixture)] if fixture else [])
