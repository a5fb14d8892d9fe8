"""`make install`'s plugin step: `meltano install`, each plugin shown as Meltano reports it.

Meltano 4.4.1 logs, per plugin (meltano/core/plugin_install_service.py, install_status_update):
"Installing <type> '<name>'" when its virtualenv starts, "Installed <type> '<name>'" when it is done,
"Skipped installing <type> '<name>'. <why>." for a plugin that reuses its parent's virtualenv,
"Installation failed. <message>." at [error] for a failure, its message alone at [warning] for a
plugin whose optional install step failed (WARNING status, counted as not installed: exit status 1),
and at the end "Installed N/M plugins".

On a terminal the plugins being installed are shown live (entry/progress.py); in a pipe or a log
a line per plugin installed and, between them, "still installing: ..." after 5 s of quiet. The
whole output goes to .meltano/install.log. Meltano's exit status decides: a failure prints the
log's end and the rerun command; a plugin Meltano never said was installed is said as Meltano left
it (failed, with a warning, interrupted). Ctrl-C lets Meltano stop (a second one kills it), labels
the plugins it cut short "interrupted" and ends with the rerun command.

    python -m northwind_elt.entry.meltano_install [meltano install's arguments]

A module of the package rather than a script: the Docker image runs `make install` before it
copies scripts/.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from northwind_elt.core.settings import project_root
from northwind_elt.core.text import number, seconds
from northwind_elt.entry.progress import LiveProgress, Task

FAILED = "FAILED: meltano install (whole log: {log}). Fix the cause, then rerun: make install"
INTERRUPTED = "INTERRUPTED: meltano install (whole log: {log}). Rerun: make install"
# After a first Ctrl-C: written to the log when it comes, said with Meltano's next line (or once it ended).
STOPPING = "    Ctrl-C: waiting for Meltano to stop (Ctrl-C again stops it at once)"
KILLED = "    Ctrl-C again: Meltano stopped at once (killed)"
TAIL_LINES = 30

_PLUGIN = re.compile(r"\] meltano\s+(Installing|Updating|Installed|Updated|Skipped installing) (\w+) '([^']+)'")
_ERROR = re.compile(r"\[error\s*\] meltano\s+Installation failed")
_SUMMARY = re.compile(r"\] meltano\s+((?:Installed|Updated) \d+/\d+ plugins)")
# A plugin ending in Meltano's WARNING status (an optional install step failed) gets only its message, at
# [warning], without its name (cli/install.py install_status_update); the closing counts may be at [warning] too.
_WARNING = re.compile(r"\[warning\s*\] meltano\s+(?!(?:Installed|Updated|Skipped installing) \d+/\d+ plugins)(.*\S)")


class Installs:
    """The plugins of one `meltano install`, followed through its output (`take`, then `ended`)."""

    def __init__(self, progress: LiveProgress) -> None:
        self.progress = progress
        self.running: dict[str, tuple[str, Task]] = {}
        self.done: list[str] = []
        self.failed: list[str] = []
        self.interrupted: list[str] = []
        self.warnings: list[str] = []  # Meltano's warnings while plugins were being installed
        self.reused = 0
        self.summary = ""

    def take(self, line: str) -> None:
        if (event := _PLUGIN.search(line)) is not None:
            verb, kind, name = event.groups()
            if verb in ("Installing", "Updating"):
                self.running[name] = (kind, self.progress.start(name))
            elif verb == "Skipped installing":
                self.reused += 1
            elif name in self.running:
                self.done.append(name)
                self._end(name, verb.lower())
        elif _ERROR.search(line):
            # The failed plugin is named in the message or the state Meltano adds to it; the longest
            # name that fits (tap-x--y, not tap-x). Otherwise it shows as failed once Meltano ends.
            named = [name for name in self.running if f"'{name}'" in line or f"/{name}'" in line]
            if named:
                name = max(named, key=len)
                self.failed.append(name)
                self._end(name, "FAILED")
        elif (summary := _SUMMARY.search(line)) is not None:
            self.summary = summary.group(1)
        elif (warning := _WARNING.search(line)) is not None and self.running:
            self.warnings.append(warning.group(1))

    def ended(self, code: int, *, interrupted: bool = False) -> None:
        """Meltano has exited with `code`: each plugin it began and never reported done is said as
        Meltano left it. Meltano's exit status, not its lines, says whether the install worked."""
        warned = " with a warning, see the log" if self.warnings else ""
        for name in list(self.running):
            if interrupted:
                self.interrupted.append(name)
                self._end(name, "interrupted")
            elif code == 0:  # Meltano counts it installed (4.4.1 exits 1 on a WARNING status)
                self.done.append(name)
                self._end(name, "installed", warned or " without Meltano saying so, see the log")
            else:
                self.failed.append(name)
                self._end(name, "FAILED", warned)

    def _end(self, name: str, verb: str, note: str = "") -> None:
        kind, task = self.running.pop(name)
        task.finish(f"    {verb} {kind} '{name}'{note} ({seconds(task.elapsed())} s)")


def still_installing(tasks: list[Task], now: float) -> str:
    return "    still installing: " + ", ".join(f"{task.name} ({task.elapsed(now):.0f} s)" for task in tasks)


def installing(task: Task, now: float) -> str:
    return f"    installing {task.name} {task.elapsed(now):.0f} s"


def meltano() -> str:
    beside = Path(sys.executable).parent / "meltano"
    return str(beside) if beside.exists() else "meltano"


class CtrlC:
    """Ctrl-C while Meltano runs. Meltano, in the same process group, got it too and stops: its output
    is read to its end (so the log has it and no plugin is left half-said). A second Ctrl-C kills it.
    A handler that only counts (no KeyboardInterrupt in the middle of a line being read or logged)."""

    def __init__(self, proc: subprocess.Popen[str], log_fd: int) -> None:
        self.proc, self.log_fd, self.count = proc, log_fd, 0
        self._before: Any = None

    def __enter__(self) -> CtrlC:
        if threading.current_thread() is threading.main_thread():  # Python's rule for signal handlers
            self._before = signal.signal(signal.SIGINT, self._pressed)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._before is not None:
            signal.signal(signal.SIGINT, self._before)

    def _pressed(self, signum: int, frame: object) -> None:
        self.count += 1
        # Straight to the file: the main thread may be inside the log's own buffered write.
        with contextlib.suppress(OSError):
            os.write(self.log_fd, ((STOPPING if self.count == 1 else KILLED).strip() + "\n").encode())
        if self.count > 1:
            self.proc.kill()


def main(args: list[str], meltano_command: Sequence[str] | None = None) -> int:
    """`meltano install args`; `meltano_command` runs instead of the meltano beside this interpreter."""
    root = project_root()
    # Beside the plugins Meltano installs: .meltano/, or where MELTANO_SYS_DIR_ROOT puts them.
    log_path = Path(os.environ.get("MELTANO_SYS_DIR_ROOT") or root / ".meltano") / "install.log"
    shown = log_path.relative_to(root) if log_path.is_relative_to(root) else log_path
    log_path.parent.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    with log_path.open("w") as log, LiveProgress(render=installing, summary=still_installing) as progress:
        installs = Installs(progress)
        proc = subprocess.Popen(
            [*(meltano_command or [meltano()]), "install", *args],
            cwd=root,
            env={**os.environ, "NO_COLOR": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        assert proc.stdout is not None
        said_stopping = False
        with CtrlC(proc, log.fileno()) as ctrl_c:
            for line in proc.stdout:
                log.write(line)
                log.flush()
                installs.take(line)
                if ctrl_c.count and not said_stopping:
                    said_stopping = True
                    progress.print(STOPPING)
            code = proc.wait()
        if ctrl_c.count and not said_stopping:  # nothing came from Meltano after it
            progress.print(STOPPING)
        if ctrl_c.count > 1:
            progress.print(KILLED)
        installs.ended(code, interrupted=bool(ctrl_c.count))
    # After the live display has gone: the last line on the screen is what to do next.
    if ctrl_c.count:
        print(INTERRUPTED.format(log=shown))
        return 130
    if code != 0:
        print("".join(log_path.read_text(errors="replace").splitlines(keepends=True)[-TAIL_LINES:]), end="")
        print(FAILED.format(log=shown))
        return code if code > 0 else 1
    reused = f"; {number(installs.reused)} reuse a parent's virtualenv" if installs.reused else ""
    print(f"    {installs.summary or 'Installed every plugin'}{reused} ({seconds(time.monotonic() - began)} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
