"""One Meltano-job runner for every pipeline: `meltano run JOB` for a unit (day, month or run).

Each run gets its own process group, so a signal to the caller (SIGTERM from Airflow or
systemd, SIGINT from Ctrl-C) stops the whole tree (Meltano, taps, targets, dbt), and the
caller's locks are released only once every one of those processes is gone. The output goes
to a log under the data directory, without colour codes or passwords; `find_cause` and
`task_message` pick out what a person needs from its last lines.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from northwind_elt.core import ledger, settings
from northwind_elt.core.day import DAY_ENV, DayLayout, path_component
from northwind_elt.core.locks import StopRequested, plugin_lock, step_lock

# Lines worth quoting from a failed run's output, most specific first.
_CAUSE_PATTERNS = (
    re.compile(r"(?:^|\s)ERROR: (.+)"),
    re.compile(r"\b(?:CsvContractError|PipelineError|ConfigError): (.+)"),
    re.compile(r"((?:connection to server|could not connect|password authentication failed|FATAL:).+)"),
    re.compile(r"\b(\w+(?:Error|Exception|Invalid|Refused|Interrupt)(?:\([^)]*\))?: .+)"),
    # `\s++` would be clearer, but re only has possessive quantifiers from 3.11 on: the
    # explicit (?=\S) stops the spaces from backtracking into the lookahead.
    re.compile(r"\[error\s*\] meltano\s+(?=\S)((?!Block run completed|Run invocation could not be completed).+)"),
)
CONNECTION_TROUBLE = re.compile(r"connection|connect|password authentication|timeout expired|Name or service", re.I)
TASK_FIX = re.compile(r"\bFix: (.+)")
TASK_RERUN = re.compile(r"Then rerun: (nw run --date \S+ --from \S+)")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# Meltano's prefix on each line of a plugin's output: "<timestamp> [info     ] <plugin>   ".
_MELTANO_PREFIX = re.compile(r"^\S+Z \[\s*\w+\s*\] \S+\s+")
# Meltano's own lines (not a task's), which end a task's message.
_MELTANO_OWN = re.compile(r"^(Block run completed|Run invocation could not be completed|Run completed)")
DBT_DAY_ENV = "DBT_ENV_CUSTOM_ENV_RUN_DATE"
# After SIGTERM, how long the step's processes get to stop before SIGKILL.
STOP_GRACE_S = 10.0


def find_cause(lines: list[str]) -> str | None:
    for pattern in _CAUSE_PATTERNS:
        for line in reversed(lines):
            if found := pattern.search(_ANSI.sub("", line)):
                return found.group(1).strip()
    return None


# `meltano run` options that take a value (Meltano 4.4), to tell the jobs and blocks it names from them.
_RUN_OPTIONS_WITH_VALUE = frozenset({"--state-id-suffix", "--state-strategy", "--run-id", "--timeout"})


def invoking_meltano_run(argv: Sequence[str] | None = None) -> list[str]:
    """The jobs and blocks named by the `meltano run` that started this task (its parent process's
    command line, or `argv`), for messages that name the job the user ran; [] when not run so.
    Meltano tells a plugin neither its job nor its run in the environment."""
    if argv is None:
        import psutil  # here: only a refusing task asks

        try:
            argv = psutil.Process(os.getppid()).cmdline()
        except (psutil.Error, OSError):
            return []
    launcher = next((n for n, arg in enumerate(argv) if Path(arg).name == "meltano"), None)
    if launcher is None or "run" not in argv[launcher + 1 :]:
        return []
    names: list[str] = []
    rest = iter(argv[argv.index("run", launcher + 1) + 1 :])
    for arg in rest:
        if arg in _RUN_OPTIONS_WITH_VALUE:
            next(rest, None)
        elif not arg.startswith("-"):
            names.append(arg)
    return names


def meltano_executable() -> str:
    """The meltano installed beside this interpreter (the project's venv), whatever PATH says."""
    beside = Path(sys.executable).parent / "meltano"
    return str(beside) if beside.exists() else "meltano"


class _RunLog:
    """The run's log file; a full disk stops the logging, never the run or its report."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._handle: IO[str] | None = path.open("w")
        except OSError as err:
            self._stop(err)

    def _stop(self, err: OSError) -> None:
        self._handle = None
        print(f"(log {self.path} not written: {err})", file=sys.stderr)

    def write(self, line: str) -> None:
        if self._handle is not None:
            try:
                self._handle.write(line)
            except OSError as err:
                self._stop(err)

    def close(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.close()


class Interrupted(Exception):
    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


class Signals:
    """Turn SIGTERM/SIGINT into a stop request for the running child groups."""

    def __init__(self, grace_s: float = STOP_GRACE_S) -> None:
        self.received: int | None = None
        self.groups: set[int] = set()
        self.grace_s = grace_s
        # Once a signal came: when whatever still runs of the groups gets SIGKILL.
        self.deadline: float | None = None

    def __enter__(self) -> Signals:
        self._previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGTERM, signal.SIGINT)}
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def add_group(self, group: int) -> None:
        self.groups.add(group)
        if self.received is not None:  # a signal arrived before the group existed
            self.stop_group()

    def lines(self, stream: IO[bytes]) -> Iterator[str]:
        """One child's output line by line (see `read`)."""
        for _, line in self.read(lambda: [stream]):
            if line is not None:
                yield line

    def read(self, streams: Callable[[], Sequence[IO[bytes]]]) -> Iterator[tuple[IO[bytes], str | None]]:
        """(stream, line) as the children write them, and (stream, None) once a stream has ended;
        until every stream `streams()` names (asked again after each line: runs start meanwhile)
        has ended. Wakes up for signals as well as for output.

        A signal may be delivered to any thread of this process (pyarrow starts some); a
        blocking read in the main thread would then never return to run the handler while
        the children are silent. The wakeup fd makes select() return for every signal.
        """
        open_streams: dict[int, IO[bytes]] = {}
        pending: dict[int, bytes] = {}
        ended: set[int] = set()
        wake_r, wake_w = socket.socketpair()
        wake_w.setblocking(False)
        previous = signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
        try:
            while True:
                for stream in streams():
                    fd = stream.fileno()
                    if fd not in open_streams and id(stream) not in ended:
                        os.set_blocking(fd, False)
                        open_streams[fd], pending[fd] = stream, b""
                if not open_streams:
                    return
                timeout = None if self.deadline is None else max(0.0, self.deadline - time.monotonic())
                ready, _, _ = select.select([*open_streams, wake_r], [], [], timeout)
                if not ready and self.deadline is not None and time.monotonic() >= self.deadline:
                    self._kill_group()  # a process ignored SIGTERM (e.g. a tap blocked in a query)
                if wake_r in ready:
                    wake_r.recv(4096)  # the handler itself runs as select() returns
                for fd in [fd for fd in ready if fd in open_streams]:
                    stream = open_streams[fd]
                    try:
                        chunk = os.read(fd, 1 << 16)
                    except BlockingIOError:
                        continue
                    if not chunk:
                        if pending[fd]:
                            yield stream, pending[fd].decode(errors="replace")
                        del open_streams[fd], pending[fd]
                        ended.add(id(stream))
                        yield stream, None
                        continue
                    *complete, pending[fd] = (pending[fd] + chunk).split(b"\n")
                    for line in complete:
                        yield stream, line.decode(errors="replace") + "\n"
        finally:
            signal.set_wakeup_fd(previous)
            wake_r.close()
            wake_w.close()

    def _handle(self, signum: int, _frame: object) -> None:
        first = self.received is None
        self.received = signum
        if first:
            self.deadline = time.monotonic() + self.grace_s
            self.stop_group()
        else:  # asked twice: no more patience
            self._kill_group()

    def stop_group(self) -> None:
        for group in self.groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGTERM)

    def _kill_group(self) -> None:
        self.deadline = None
        for group in self.groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)


@contextlib.contextmanager
def holding(
    signals: Signals,
    job: str,
    unit: DayLayout | str,
    name: str,
    *,
    what: str | None = None,
    waiting: str | None = None,
) -> Iterator[None]:
    """The locks of an entry point that runs `job` for a unit: `name` for the unit (a second run
    fails at once, AlreadyRunning, told `what` runs) and the job's across units (waited for, told
    `waiting`: Meltano shares its run directories). A signal during the wait raises Interrupted."""
    with contextlib.ExitStack() as held:
        held.enter_context(step_lock(unit, name, what))
        try:
            held.enter_context(plugin_lock(job, lambda: signals.received is not None, waiting))
        except StopRequested:
            print(f"INTERRUPTED while waiting for a run of {job}; nothing was started", file=sys.stderr)
            raise Interrupted(signals.received or signal.SIGTERM) from None
        yield


def _wait_group_gone(group: int, grace_s: float = STOP_GRACE_S) -> None:
    """Return only once no process of the group is left; SIGKILL what outlives the grace."""
    deadline = time.monotonic() + grace_s
    while True:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        except PermissionError:  # only zombies or foreign processes left
            return
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        time.sleep(0.05)


def task_text(line: str) -> str:
    """A line of Meltano's output without its timestamp, level and plugin name."""
    return _MELTANO_PREFIX.sub("", line).strip()


def log_path(job: str, unit: dt.date | str, started: dt.datetime | None = None) -> Path:
    """Where a run of `job` for the unit logs: `logs/<day>/`, `logs/<YYYY-MM>/`, `logs/<day>/<run id>/`,
    or `logs/<pipeline>/` for a step over every unit (PADAM's prepare)."""
    key = unit.isoformat() if isinstance(unit, dt.date) else unit
    folder = settings.data_dir() / "logs" / Path(*(path_component(part) for part in key.split("/")))
    return folder / f"{job}-{started or ledger.now():%Y%m%dT%H%M%S}.log"


@dataclass
class MeltanoRun:
    """One `meltano run` of jobs for a unit (see `start_meltano_run`); once it has ended, its exit
    status, the last lines of its output and the log they went to."""

    proc: subprocess.Popen
    log_file: _RunLog
    echo: bool | Callable[[str], bool]
    watch: Callable[[str], Path | None] | None
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=80))
    returncode: int | None = None

    @property
    def log(self) -> Path:
        return self.log_file.path

    def take(self, raw_line: str) -> None:
        line = ledger.redact(_ANSI.sub("", raw_line))  # no password (nor colour code) in the terminal or log
        if self.echo is True:
            sys.stdout.write(line)
            sys.stdout.flush()
        elif self.echo and self.echo(line):
            print(f"  {task_text(line)}", flush=True)
        self.log_file.write(line)
        self.tail.append(line)
        if self.watch is not None and (next_log := self.watch(line)) is not None:
            self.log_file.close()
            self.log_file = _RunLog(next_log)
            self.tail.clear()

    def ended(self, signals: Signals) -> None:
        """Its output has ended: wait for the whole process group."""
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.returncode = self.proc.wait()
        _wait_group_gone(self.proc.pid)
        signals.groups.discard(self.proc.pid)
        self.log_file.close()


def start_meltano_run(
    jobs: str | Sequence[str],
    unit: dt.date | str,
    signals: Signals,
    extra_env: Mapping[str, str | None] | None = None,
    echo: bool | Callable[[str], bool] = True,
    *,
    flags: Sequence[str] = (),
    log: Path | None = None,
    watch: Callable[[str], Path | None] | None = None,
) -> MeltanoRun:
    """`meltano run [flags] job...` for the unit, started in its own process group (see
    run_meltano_job; `pump` reads its output)."""
    jobs = [jobs] if isinstance(jobs, str) else list(jobs)
    log_file = _RunLog(log or log_path(jobs[0], unit))
    env = {
        **os.environ,
        # A database's port left unset follows PG_PORT for the plugins too (settings.derived_ports).
        **settings.derived_ports(),
        settings.DATA_DIR_ENV: str(settings.data_dir()),
        # Plain text in the log and the terminal: no colour codes from Meltano or dbt.
        "NO_COLOR": "1",
        "DBT_USE_COLORS": "false",
    }
    if isinstance(unit, dt.date):
        env[DAY_ENV] = unit.isoformat()
        # dbt records DBT_ENV_CUSTOM_ENV_* in its results: `nw commit` reads the day a build was for.
        env[DBT_DAY_ENV] = unit.isoformat()
    for name, value in (extra_env or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    proc = subprocess.Popen(
        # --force: the unit's locks and leases guard concurrency exactly (and die with
        # their process), where Meltano's own guard would block a rerun after a kill.
        [meltano_executable(), "run", "--force", *flags, *jobs],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=settings.project_root(),
        start_new_session=True,
    )
    signals.add_group(proc.pid)
    return MeltanoRun(proc, log_file, echo, watch)


def pump(
    runs: Sequence[MeltanoRun],
    signals: Signals,
    on_line: Callable[[MeltanoRun, str], None] | None = None,
    more: Callable[[], Sequence[MeltanoRun]] | None = None,
) -> None:
    """The runs' output, side by side, until every one has ended (the caller checks
    `signals.received`). `on_line` sees each line after its run took it; `more`, asked after each
    line, returns the runs started meanwhile, read from then on."""
    running = list(runs)

    def streams() -> list[IO[bytes]]:
        if more is not None:
            running.extend(more())
        return [run.proc.stdout for run in running if run.returncode is None]

    for stream, line in signals.read(streams):
        run = next(run for run in running if run.proc.stdout is stream)
        if line is None:
            run.ended(signals)
            continue
        run.take(line)
        if on_line is not None:
            on_line(run, line)


def run_meltano_job(
    job: str | Sequence[str],
    unit: dt.date | str,
    signals: Signals,
    extra_env: Mapping[str, str | None] | None = None,
    echo: bool | Callable[[str], bool] = True,
    *,
    flags: Sequence[str] = (),
    log: Path | None = None,
    watch: Callable[[str], Path | None] | None = None,
) -> tuple[int, list[str], Path]:
    """One `meltano run [flags] job...` for the unit, in its own process group, its output kept in a
    log and shown (echo True), hidden (False) or shown where echo(line) says so, as task text:
    (exit status, last lines, log path). The caller checks `signals.received`.

    Several jobs run in one Meltano process (one start-up for all of them); `watch`, called with
    each line, returns the log the lines after it go to when one job's part has ended (the tail
    then starts again), else None.

    A day (a date) is pinned in RUN_DATE for the job's tasks; a month's or run's key, or a
    pipeline's name, only names the log's folder (`log_path`). A variable of `extra_env` set
    to None is removed from the job's environment.
    """
    run = start_meltano_run(job, unit, signals, extra_env, echo, flags=flags, log=log, watch=watch)
    pump([run], signals)
    assert run.returncode is not None
    return run.returncode, list(run.tail), run.log


def task_message(tail: list[str]) -> list[str]:
    """The last `ERROR:` message a task of the project wrote, with its Fix and rerun lines."""
    texts = [task_text(line) for line in tail]
    starts = [i for i, text in enumerate(texts) if text.startswith("ERROR: ")]
    if not starts:
        return []
    message = [texts[starts[-1]]]
    for text in texts[starts[-1] + 1 :]:
        if not text or _MELTANO_OWN.search(text):
            break
        message.append(text)
    return message[:12]
