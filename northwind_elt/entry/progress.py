"""Live progress for long waits: named tasks (a step, a plugin, a day) with their elapsed time and,
where the task knows it, a count (rows so far) or a detail (dbt 12/32).

On a terminal, rich's live display: the running tasks below the lines already printed, refreshed
four times a second. In a pipe or a log, plain lines: while tasks run, one line saying what is
still running once nothing was printed for `every` seconds. Either way each task's final line is
printed once, when it finishes.

    with LiveProgress() as progress:
        task = progress.start("extract-postgres")
        task.update(count=1207)                  # rows so far
        task.finish("extract-postgres success")  # its line, printed once

Plain mode is driven by `tick()` (a background thread calls it; tests call it with their own clock).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import IO, Any

from northwind_elt.core.text import plural

Clock = Callable[[], float]
# Seconds of quiet in plain mode before a line says what is still running.
PLAIN_EVERY_S = 5.0


@dataclass(eq=False)
class Task:
    """One thing being waited for; `progress` shows it until `finish`."""

    progress: LiveProgress
    name: str
    started: float
    count: int | None = None  # e.g. rows so far; None: not known
    unit: str = "row"  # singular: said as text.plural(count, unit)
    detail: str = ""
    finished: bool = field(default=False, init=False)

    def elapsed(self, now: float | None = None) -> float:
        return (self.progress.clock() if now is None else now) - self.started

    def update(self, *, count: int | None = None, detail: str | None = None) -> None:
        with self.progress.lock:
            if count is not None:
                self.count = count
            if detail is not None:
                self.detail = detail

    def advance(self, by: int = 1) -> None:
        with self.progress.lock:
            self.count = (self.count or 0) + by

    def finish(self, line: str | None = None) -> None:
        """No longer running; `line` (its final line) printed once, where the display prints lines."""
        self.progress.finished(self, line)


def describe(task: Task, now: float) -> str:
    """'extract-postgres running 12 s (1,207 rows; dbt 3/9)': a running task in a few words."""
    known = ([plural(task.count, task.unit)] if task.count is not None else []) + ([task.detail] if task.detail else [])
    return f"{task.name} running {task.elapsed(now):.0f} s" + (f" ({'; '.join(known)})" if known else "")


class LiveProgress:
    """The running tasks, shown live on a terminal (rich) or by periodic plain lines elsewhere.

    live: None decides by `out` (a terminal that is not TERM=dumb); `render(task, now)` is a running
    task's row on the live display; `summary(tasks, now)` the plain line about the running tasks
    (default: '  ... a running 12 s, b running 3 s'); `ticker`: a thread calls `tick()` in plain
    mode (tests turn it off and call `tick()` themselves).
    """

    def __init__(
        self,
        *,
        live: bool | None = None,
        out: IO[str] | None = None,
        clock: Clock = time.monotonic,
        every: float = PLAIN_EVERY_S,
        render: Callable[[Task, float], str] | None = None,
        summary: Callable[[list[Task], float], str] | None = None,
        ticker: bool = True,
    ) -> None:
        self.out = out if out is not None else sys.stdout
        self.live = _is_terminal(self.out) if live is None else live
        self.clock, self.every = clock, every
        self.render = render or describe
        self.summary = summary or (lambda tasks, now: "  ... " + ", ".join(describe(t, now) for t in tasks))
        self.lock = threading.RLock()
        self.running: list[Task] = []
        self._quiet_since = clock()
        self._ticker = ticker
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._live: Any = None  # rich.live.Live in live mode
        self._spinners: dict[int, Any] = {}

    # -- lifetime -------------------------------------------------------------------------------

    def __enter__(self) -> LiveProgress:
        self._quiet_since = self.clock()
        if self.live:
            self._start_live()
        elif self._ticker:
            self._thread = threading.Thread(target=self._tick_loop, name="progress-ticker", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._live is not None:
            self._live.stop()  # transient: the running rows go, the final lines stay
            self._live = None

    # -- what callers use ------------------------------------------------------------------------

    def start(self, name: str, *, unit: str = "row") -> Task:
        task = Task(self, name, self.clock(), unit=unit)
        with self.lock:
            self.running.append(task)
            if self._live is not None:
                from rich.spinner import Spinner

                self._spinners[id(task)] = Spinner("dots")
        return task

    def print(self, line: str) -> None:
        """A line of its own, above the live display (or in order with the plain lines)."""
        live = self._live
        if live is not None:
            from rich.text import Text

            # Not under self.lock: rich's refresh thread holds its own lock while it asks for the rows.
            live.console.print(Text(line))
            self.touch()
            return
        with self.lock:
            self.out.write(line + "\n")
            self.out.flush()
            self._quiet_since = self.clock()

    def touch(self) -> None:
        """Something else was just printed (e.g. a verbose run's own output): not quiet."""
        with self.lock:
            self._quiet_since = self.clock()

    def finished(self, task: Task, line: str | None) -> None:
        with self.lock:
            if task.finished:
                return
            task.finished = True
            self.running.remove(task)
            self._spinners.pop(id(task), None)
            if line is not None and self._live is None:
                self.print(line)  # in order with the ticker's lines
                return
        live = self._live
        if live is not None:
            live.refresh()  # first: the line is printed above the rows as last rendered
        if line is not None:
            self.print(line)

    def tick(self) -> None:
        """Plain mode: the line about the running tasks, if nothing was printed for `every` seconds."""
        if self.live:
            return
        with self.lock:
            now = self.clock()
            if self.running and now - self._quiet_since >= self.every:
                self.print(self.summary(list(self.running), now))

    # -- internals -------------------------------------------------------------------------------

    def _tick_loop(self) -> None:
        while not self._stop.wait(min(1.0, self.every / 5)):
            try:
                self.tick()
            except (OSError, ValueError):  # the output went away (closed pipe): stop telling it
                return

    def _start_live(self) -> None:
        from rich.console import Console
        from rich.live import Live

        # soft_wrap: a long line (a path, a command) stays one line to copy, wrapped by the terminal only.
        console = Console(
            file=self.out, force_terminal=True, soft_wrap=True, highlight=False, markup=False, emoji=False
        )
        # Whatever else this process prints goes above the live rows instead of through them; stderr
        # only when it is a terminal too (else rich would send it to stdout).
        ours = self.out is sys.stdout
        self._live = Live(
            console=console,
            get_renderable=self._renderable,
            refresh_per_second=4,
            transient=True,
            redirect_stdout=ours,
            redirect_stderr=ours and _is_terminal(sys.stderr),
        )
        self._live.start()

    def _renderable(self) -> Any:
        from rich.table import Table
        from rich.text import Text

        now = self.clock()
        with self.lock:
            rows = [(self.render(task, now), self._spinners.get(id(task))) for task in self.running]
        table = Table.grid(padding=(0, 1))
        for text, spinner in rows:
            table.add_row(Text(text), *([spinner] if spinner is not None else []))
        return table


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False
