"""The local servers `nw ads up` starts and `nw ads down` stops: the mock ads API and s3rver.

Each runs detached (its own session, so it outlives `nw`), logs to
`$NW_DATA_DIR/ads/services/<name>.log`, and is known by its pid file beside the log. A
server counts as started only once its URL answers HTTP; one that exits first is reported
with the end of its log.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
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
    url: str  # answers HTTP once ready
    port: int

    @property
    def folder(self) -> Path:
        return settings.data_dir() / "ads" / "services"

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


def start(service: Service, argv: list[str]) -> str:
    """Start the server unless it runs; a message saying what happened."""
    pid = running_pid(service)
    if pid is not None and answers(service.url):
        return f"{service.what} is running on {service.url} (process {pid})"
    if port_taken(service.port):
        if answers(service.url):
            return f"{service.what}: {service.url} already answers (not started by this project; used as is)"
        raise ServiceError(
            f"port {service.port} on 127.0.0.1 is in use by another program, so the {service.what} cannot listen "
            f"there. Change the port in .env, or stop that program."
        )
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
    deadline = time.monotonic() + START_TIMEOUT_S
    while not answers(service.url):
        if proc.poll() is not None or time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
            service.pid_file.unlink(missing_ok=True)
            tail = service.log_file.read_text(errors="replace")[-1500:].strip() or "(no output)"
            raise ServiceError(
                f"the {service.what} did not start on {service.url}; its log {service.log_file}:\n{tail}"
            )
        time.sleep(0.1)
    return f"{service.what} started on {service.url} (process {proc.pid}, log {service.log_file})"


def stop(service: Service) -> str:
    pid = running_pid(service)
    if pid is None:
        service.pid_file.unlink(missing_ok=True)
        return f"{service.what} is not running"
    proc = psutil.Process(pid)
    proc.terminate()
    try:
        proc.wait(STOP_TIMEOUT_S)
    except psutil.TimeoutExpired:
        proc.kill()
        proc.wait(STOP_TIMEOUT_S)
    service.pid_file.unlink(missing_ok=True)
    return f"{service.what} stopped (process {pid})"


def api_command(port: int, fixture: Path | None) -> list[str]:
    argv = [sys.executable, "-m", "northwind_elt.local.ads_api", "--host", "127.0.0.1", "--port", str(port)]
    return argv + (["--fixture", str(fixture)] if fixture else [])
