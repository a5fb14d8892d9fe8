"""`make install`'s plugin step: `meltano install`, each plugin shown as Meltano reports it.

Meltano 4.4.1 logs, per plugin (meltano/core/plugin_install_service.py, install_status_update):
"Installing <type> '<name>'" when its virtualenv starts, "Installed <type> '<name>'" when it is done,
"Skipped installing <type> '<name>'. <why>." for a plugin that reuses its parent's virtualenv,
"Installation failed. <message>." at [error] for a failure, and at the end "Installed N/M plugins".

On a terminal the plugins being installed are shown live (entry/progress.py); in a pipe or a log
a line per plugin installed and, between them, "still installing: ..." after 5 s of quiet. The
whole output goes to .meltano/install.log; a failure prints its end and the rerun command.

    python -m northwind_elt.entry.meltano_install [meltano install's arguments]

A module of the package rather than a script: the Docker image runs `make install` before it
copies scripts/.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from northwind_elt.core.settings import project_root
from northwind_elt.entry.progress import LiveProgress, Task

FAILED = "FAILED: meltano install (whole log: {log}). Fix the cause, then rerun: make install"
TAIL_LINES = 30

_PLUGIN = re.compile(r"\] meltano\s+(Installing|Updating|Installed|Updated|Skipped installing) (\w+) '([^']+)'")
_ERROR = re.compile(r"\[error\s*\] meltano\s+Installation failed")
_SUMMARY = re.compile(r"\] meltano\s+((?:Installed|Updated) \d+/\d+ plugins)")


class Installs:
    """The plugins of one `meltano install`, followed through its output (`take`, then `ended`)."""

    def __init__(self, progress: LiveProgress) -> None:
        self.progress = progress
        self.running: dict[str, tuple[str, Task]] = {}
        self.done: list[str] = []
        self.failed: list[str] = []
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
                kind, task = self.running.pop(name)
                self.done.append(name)
                task.finish(f"    {verb.lower()} {kind} '{name}' ({task.elapsed():.1f} s)")
        elif _ERROR.search(line):
            # The failed plugin is named in the message or the state Meltano adds to it; the longest
            # name that fits (tap-x--y, not tap-x). Otherwise it shows as failed once Meltano ends.
            named = [name for name in self.running if f"'{name}'" in line or f"/{name}'" in line]
            if named:
                self._fail(max(named, key=len))
        elif (summary := _SUMMARY.search(line)) is not None:
            self.summary = summary.group(1)

    def ended(self) -> None:
        """Meltano has exited: a plugin it began and never reported done did not install."""
        for name in list(self.running):
            self._fail(name)

    def _fail(self, name: str) -> None:
        kind, task = self.running.pop(name)
        self.failed.append(name)
        task.finish(f"    FAILED {kind} '{name}' ({task.elapsed():.1f} s)")


def still_installing(tasks: list[Task], now: float) -> str:
    return "    still installing: " + ", ".join(f"{task.name} ({task.elapsed(now):.0f} s)" for task in tasks)


def installing(task: Task, now: float) -> str:
    return f"    installing {task.name} {task.elapsed(now):.0f} s"


def meltano() -> str:
    beside = Path(sys.executable).parent / "meltano"
    return str(beside) if beside.exists() else "meltano"


def main(args: list[str]) -> int:
    root = project_root()
    # Beside the plugins Meltano installs: .meltano/, or where MELTANO_SYS_DIR_ROOT puts them.
    log_path = Path(os.environ.get("MELTANO_SYS_DIR_ROOT") or root / ".meltano") / "install.log"
    shown = log_path.relative_to(root) if log_path.is_relative_to(root) else log_path
    log_path.parent.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    code: int | None = None
    with log_path.open("w") as log, LiveProgress(render=installing, summary=still_installing) as progress:
        installs = Installs(progress)
        proc = subprocess.Popen(
            [meltano(), "install", *args],
            cwd=root,
            env={**os.environ, "NO_COLOR": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                log.flush()
                installs.take(line)
            code = proc.wait()
        except KeyboardInterrupt:  # Meltano, in the same process group, got the Ctrl-C too
            code = proc.wait()
            progress.print(f"INTERRUPTED: meltano install. Rerun: make install (log: {shown})")
            return 130
        finally:
            installs.ended()
    if code != 0 or installs.failed:
        print("".join(log_path.read_text(errors="replace").splitlines(keepends=True)[-TAIL_LINES:]), end="")
        print(FAILED.format(log=shown))
        return code or 1
    reused = f"; {installs.reused} reuse a parent's virtualenv" if installs.reused else ""
    print(f"    {installs.summary or 'Installed every plugin'}{reused} ({time.monotonic() - began:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
