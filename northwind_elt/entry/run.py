"""`nw run`: the entry point of the day-by-day pipelines. Resolves the day once, runs each
step's Meltano job with the day pinned (through the protocol's job runner), records failures
and interruptions in the ledger, prints one line per step, and stops cleanly on a signal.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import signal
import sys
import time
from pathlib import Path

from northwind_elt.core import ledger, settings, text
from northwind_elt.core.day import DayLayout, today_utc
from northwind_elt.core.errors import rerun_command
from northwind_elt.core.locks import StopRequested, plugin_lock, step_lock
from northwind_elt.entry.progress import LiveProgress, Task
from northwind_elt.protocol.definition import Pipeline
from northwind_elt.protocol.meltano import (
    CONNECTION_TROUBLE,
    TASK_FIX,
    TASK_RERUN,
    MeltanoRun,
    Signals,
    find_cause,
    log_path,
    pump,
    start_meltano_run,
    task_message,
    task_text,
)


def _hint(pipeline: Pipeline, step: str, cause: str | None) -> str:
    if not cause:
        return ""
    if "No space left on device" in cause:
        return f"\nFree space on the disk holding {settings.data_dir()}."
    if CONNECTION_TROUBLE.search(cause) and "Check the" not in cause and "check the" not in cause:
        start = settings.stand_in_fix(cause)
        if start and "Postgres" not in start:  # the mock ads API or the embedded S3 server is down
            return f"\nFix: {start}."
        for prefix in pipeline.step(step).connections:
            if _on_stopped_embedded_server(prefix):
                # Checking the settings would go in a circle: they are right, the server is down.
                port = settings.pg_conn(prefix).port
                return f"\nThe project's embedded Postgres (port {port}) is not running: start it with `nw db up`."
            return f"\nCheck {settings.describe_conn(prefix)}."
    return ""


def _on_stopped_embedded_server(prefix: str) -> bool:
    """Whether the connection points at the project's embedded server and that server is stopped."""
    from northwind_elt.local import postgres as embedded

    target = settings.pg_conn(prefix)
    if target.host not in ("127.0.0.1", "localhost") or target.port != embedded.port():
        return False
    try:
        return not embedded.is_running()
    except (OSError, embedded.EmbeddedPostgresError):
        return False


def _record(pipeline: Pipeline, day: dt.date, step: str, status: str, **kwargs) -> None:
    try:
        ledger.record(pipeline.name, day, step, status, **kwargs)
    except ledger.WRITE_ERRORS as err:
        print(f"(ledger {ledger.where()} not updated: {err})", file=sys.stderr)


def _failed(
    pipeline: Pipeline,
    step: str,
    day: dt.date,
    started: dt.datetime,
    returncode: int,
    tail: list[str],
    log: Path,
    verbose: bool,
) -> int:
    """Record and explain the failure of `step` (its part of the Meltano run ended without a success)."""
    job = pipeline.step(step).job
    cause = find_cause(tail)
    if pipeline.step(step).kind == "transform":
        from northwind_elt.protocol.dbt import failures_since

        failures = failures_since(started, pipeline.dbt_target_path)
        if failures:
            cause = f"dbt build failed: {'; '.join(failures)}"
    if returncode == 0:
        cause = cause or "the job exited 0 but its commit task recorded no success"
    # A task that refused knows best where to restart (e.g. the load gate: the extract).
    # What the user does not see otherwise (the output went to the log): the task's own
    # message, or, when nothing names a cause, the end of the output.
    said = task_message(tail) or ([] if cause else [task_text(line) for line in tail[-15:] if line.strip()])
    rerun = next((m.group(1) for line in reversed(tail) if (m := TASK_RERUN.search(line))), None)
    rerun = rerun or rerun_command(step, day)
    fix = next((m.group(1) for line in reversed(tail) if (m := TASK_FIX.search(line))), None)
    _record(
        pipeline,
        day,
        step,
        "failed",
        started_at=started,
        error=(f"{cause}\n---\n" if cause else "") + "".join(tail)[-3000:],
        log=log,
    )
    hint = _hint(pipeline, step, cause)
    # Quote only what the Cause, Fix and rerun lines do not already say.
    repeated = {f"ERROR: {cause}", f"Fix: {fix}"}
    said = [line for line in said if line not in repeated and not line.startswith("Then rerun: ")]
    if fix and fix.rstrip(".").lower() in hint.lower():
        fix = None  # the hint already says it
    elif fix and any(command in fix and command in hint for command in ("nw db up", "nw ads up", "nw s3 up")):
        hint = ""  # the task's Fix names the same start command, and what to check if the server runs
    print(
        f"\nFAILED: step '{step}' for {day} (meltano run {job} exited {returncode}).\n"
        + (f"Cause: {cause}{hint}\n" if cause else "")
        + (f"Fix: {fix}\n" if fix else "")
        + ("".join(f"  | {line}\n" for line in said) if not verbose else "")
        + f"Full log: {log}\n"
        f"Fix the cause, then rerun: {rerun}",
        file=sys.stderr,
    )
    return returncode or 1


_BLOCK_DONE = re.compile(r"\]\s+meltano\s+Block run completed")
# Steps that may run side by side (their needs met) do, in Meltano runs of their own: "0" runs
# every step one after another.
PARALLEL_ENV = "NW_RUN_PARALLEL_STEPS"


# What a running step's output says of its rows so far (Meltano prefixes each line with the plugin's name).
_PLUGIN = re.compile(r"^\S+Z \[\s*\w+\s*\] (\S+)\s")
_ROWS_SEEN = (
    # tap-postgres-arrow, per batch file it wrote
    ("wrote", re.compile(r"\bWrote (\d+) rows? of ")),
    # target-postgres-arrow, per table it loaded
    ("loaded", re.compile(r"\bStream '[^']*': loaded (\d+) rows? ")),
    # the Singer SDK's record counters: each METRIC line counts the records since the one before
    ("records", re.compile(r'METRIC: \{.*"metric":\s*"record_count".*"value":\s*(\d+)')),
)
# A step's commit: the rows it recorded in the ledger (protocol/steps.py says them as text.plural does).
_COMMITTED = re.compile(r": committed, ([\d,]+) rows?\b")
# dbt's result lines: "12 of 32 OK created sql table model ...", "13 of 32 PASS ...".
_DBT_DONE = re.compile(r"\b(\d+) of (\d+) (?:OK|PASS|WARN|ERROR|FAIL|SKIP|NO-OP)\b")


class _RowsSeen:
    """A running step's rows so far, from its output: the largest count any plugin has reported
    (a tap's files and its target's records count the same rows; each plugin's counts add up);
    None until one says. dbt's results so far, as a detail."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}
        self.committed: int | None = None
        self.dbt_done = 0
        self.detail = ""

    @property
    def rows(self) -> int | None:
        if self.committed is not None:
            return self.committed
        return max(self.counts.values()) if self.counts else None

    def take(self, line: str) -> bool:
        """Whether the line changed what is known."""
        if (done := _DBT_DONE.search(line)) is not None:
            # Threads finish out of order ("2 of 32" before "1 of 32"): count the results.
            self.dbt_done += 1
            self.detail = f"dbt {self.dbt_done}/{done.group(2)}"
            return True
        if (committed := _COMMITTED.search(line)) is not None:
            self.committed = int(committed.group(1).replace(",", ""))
            return True
        for kind, pattern in _ROWS_SEEN:
            if (found := pattern.search(line)) is not None:
                plugin = found_plugin.group(1) if (found_plugin := _PLUGIN.match(line)) else ""
                self.counts[(plugin, kind)] = self.counts.get((plugin, kind), 0) + int(found.group(1))
                return True
        return False


def _running_line(pipeline: Pipeline, day: dt.date, task: Task, now: float) -> str:
    """A running step's row on the live display, in the columns of its final line."""
    status = "running" + (f" ({task.detail})" if task.detail else "")
    return _line(
        (pipeline.name, task.name, day.isoformat(), text.number(task.count), text.seconds(task.elapsed(now)), status)
    )


class _Display:
    """One line per step, printed once as it ends; meanwhile the running steps with their elapsed
    seconds and rows so far where their output tells them (entry/progress.py: live on a terminal,
    a line every few seconds of quiet in a pipe or a log)."""

    def __init__(self, pipeline: Pipeline, day: dt.date, verbose: bool, progress: LiveProgress) -> None:
        self.pipeline, self.day, self.verbose, self.progress = pipeline, day, verbose, progress
        self.tasks: dict[str, Task] = {}
        self.seen: dict[str, _RowsSeen] = {}

    def started(self, step: str) -> None:
        if self.verbose:
            self.progress.print(f"==> {self.pipeline.name}: {step} for {self.day}")
        self.tasks[step] = self.progress.start(step)
        self.seen[step] = _RowsSeen()

    def output(self, step: str, line: str) -> None:
        """A line of the step's output (shown as it is when verbose)."""
        if self.verbose:
            self.progress.touch()
        seen = self.seen.get(step)
        if seen is not None and seen.take(line):
            self.tasks[step].update(count=seen.rows, detail=seen.detail)

    def ended(self, step: str, row: tuple[str, ...]) -> None:
        self.seen.pop(step, None)
        self.tasks.pop(step).finish(_line(row))


class _Steps:
    """The steps of one Meltano run of their jobs, followed as it goes: the step whose part is
    running, when it began (the first one with Meltano's start-up), its log. A step has ended
    once a block completes and the ledger holds its success since it began."""

    def __init__(self, pipeline: Pipeline, steps: tuple[str, ...], day: dt.date, display: _Display) -> None:
        self.pipeline, self.steps, self.day, self.display = pipeline, steps, day, display
        self.index = 0
        self.run: MeltanoRun | None = None
        self._start()

    @property
    def current(self) -> str | None:
        return self.steps[self.index] if self.index < len(self.steps) else None

    def _start(self) -> None:
        step = self.steps[self.index]
        self.started, self.began = ledger.now(), time.monotonic()
        self.log = log_path(self.pipeline.step(step).job, self.day, self.started)
        self.display.started(step)

    def end(self, status: str) -> None:
        """The current step's line, and the next step begins."""
        step = self.steps[self.index]
        seconds = time.monotonic() - self.began
        if status == "success":
            with contextlib.suppress(*ledger.WRITE_ERRORS):
                ledger.set_wall_seconds(self.pipeline.name, self.day, step, self.started, seconds)
        self.display.ended(step, _progress(self.pipeline, step, self.day, seconds, status))
        self.index += 1
        if status == "success" and self.current is not None:
            self._start()

    def succeeded(self) -> bool:
        try:
            return ledger.success_since(self.pipeline.name, self.day, self.steps[self.index], self.started)
        except ledger.WRITE_ERRORS:
            return False

    def watch(self, line: str) -> Path | None:
        """For the Meltano run: the next step's log once the current step has succeeded."""
        if self.current is not None:
            self.display.output(self.current, line)
        if self.current is None or not _BLOCK_DONE.search(line) or not self.succeeded():
            return None
        self.end("success")
        return self.log if self.current is not None else None

    def start(self, signals: Signals, verbose: bool) -> MeltanoRun:
        jobs = [self.pipeline.step(step).job for step in self.steps]
        self.run = start_meltano_run(jobs, self.day, signals, echo=verbose, log=self.log, watch=self.watch)
        return self.run

    def finish(self, signals: Signals, verbose: bool) -> int:
        """Once its Meltano run has ended: 0, or the exit status of the step that did not succeed
        (recorded and explained)."""
        assert self.run is not None and self.run.returncode is not None
        returncode, step = self.run.returncode, self.current
        if step is not None and signals.received is None and returncode == 0 and self.succeeded():
            self.end("success")  # its block's line was not seen (a full disk stopped the log?)
            step = self.current
        if step is None:
            return 0
        if signals.received is not None:
            name = signal.Signals(signals.received).name
            stopped = f"stopped by {name}"
            _record(
                self.pipeline, self.day, step, "interrupted", started_at=self.started, error=stopped, log=self.run.log
            )
            self.end("interrupted")
            print(
                f"\nINTERRUPTED: step '{step}' for {self.day} ({name}): its processes are stopped; "
                "nothing half-written is visible.\n"
                f"Rerun from that step: {rerun_command(step, self.day)}",
                file=sys.stderr,
            )
            return 128 + signals.received
        code = _failed(
            self.pipeline, step, self.day, self.started, returncode, list(self.run.tail), self.run.log, verbose
        )
        self.end("failed")
        return code


def plan(pipeline: Pipeline, steps: tuple[str, ...], parallel: bool = True) -> list[tuple[tuple[str, ...], ...]]:
    """The steps as segments, in order: a segment is one or more chains that run side by side,
    each chain one Meltano run of its steps' jobs. Steps whose needs are met by earlier segments
    run side by side (`parallel`); the steps after them, each needing the one before, in one chain."""
    level: dict[str, int] = {}
    for step in steps:
        needs = [level[need] for need in pipeline.step(step).needs if need in level]
        level[step] = 1 + max(needs) if needs else 0
    segments: list[tuple[tuple[str, ...], ...]] = []
    chain: list[str] = []
    for depth in sorted(set(level.values())):
        together = [step for step in steps if level[step] == depth]
        if len(together) > 1 and parallel:
            if chain:
                segments.append((tuple(chain),))
                chain = []
            segments.append(tuple((step,) for step in together))
        else:
            chain += together
    if chain:
        segments.append((tuple(chain),))
    return segments


def _run_segment(
    pipeline: Pipeline, chains: tuple[tuple[str, ...], ...], day: dt.date, signals: Signals, display: _Display, verbose
) -> int:
    """The chains of one segment side by side. The first starts alone: the others start once it
    has completed a block, so Meltano has migrated its system database by then (two first runs
    on a new one race). Every chain started runs to its end; the first non-zero status is returned."""
    followed = [_Steps(pipeline, chains[0], day, display)]
    pending = list(chains[1:])
    runs = [followed[0].start(signals, verbose)]
    first_block = False

    def on_line(run: MeltanoRun, line: str) -> None:
        nonlocal first_block
        if run is runs[0] and _BLOCK_DONE.search(line):
            first_block = True

    def more() -> list[MeltanoRun]:
        started = []
        # Not after a first chain that failed before its first block (e.g. its begin refused).
        if (first_block or runs[0].returncode == 0) and pending and signals.received is None:
            while pending:
                chain = pending.pop(0)
                steps = _Steps(pipeline, chain, day, display)
                followed.append(steps)
                started.append(steps.start(signals, verbose))
        return started

    pump(runs, signals, on_line=on_line, more=more)
    codes = [steps.finish(signals, verbose) for steps in followed]
    return next((code for code in codes if code), 0)


def check_environment(pipeline: Pipeline, steps: tuple[str, ...]) -> None:
    """Every variable the steps need, named before the first step starts."""
    prefixes = sorted({prefix for step in steps for prefix in pipeline.step(step).connections})
    names = [name for prefix in prefixes for name in settings.pg_variables(prefix)]
    settings.require(names, f"needed by {pipeline.name} {', '.join(steps)}")
    for prefix in prefixes:
        settings.pg_conn(prefix)  # ports must be numbers


def _progress(pipeline: Pipeline, step: str, day: dt.date, seconds: float, status: str) -> tuple[str, ...]:
    rows = None
    if status == "success":
        with contextlib.suppress(*ledger.WRITE_ERRORS):
            rows = (ledger.latest(pipeline.name, day).get(step) or {}).get("rows")
    return (pipeline.name, step, day.isoformat(), text.number(rows), text.seconds(seconds), status)


def _line(row: tuple[str, ...]) -> str:
    name, step_name, iso, rows, seconds, status = row
    return f"{name:<10} {step_name:<17} {iso}  {rows:>9}  {seconds:>7}  {status}"


def past_day_note(pipeline: Pipeline, day: dt.date, today: dt.date | None = None) -> str | None:
    """For a day before today (UTC) of a pipeline whose source has no history: the one line saying
    that the day's run reads the source as it is now."""
    if not pipeline.snapshot_source or day >= (today or today_utc()):
        return None
    return (
        f"note: {day} is a past day: {pipeline.name} reads {pipeline.snapshot_source} as it is now"
        " (a snapshot, not a history); the day only names the partitions"
    )


def run(pipeline: Pipeline, steps: tuple[str, ...], day: dt.date, verbose: bool = False) -> int:
    """Every step, each in its turn: steps whose needs are met run side by side, the rest one
    after another in one `meltano run` of their jobs (one Meltano start-up for them); one line
    per step as it ends, the running steps' progress meanwhile (`_Display`)."""
    check_environment(pipeline, steps)
    if note := past_day_note(pipeline, day):
        print(note, flush=True)
    layout = DayLayout.for_day(day)
    with Signals() as signals, contextlib.ExitStack() as held:
        # One run per step and day: a second one fails at once instead of interleaving.
        for step in sorted(steps):
            held.enter_context(step_lock(layout, f"run-{pipeline.name}-{step}"))
        # Meltano keeps one run directory per plugin (catalog, config), shared by all days:
        # runs of the same job for other days wait their turn. Sorted order: no deadlock.
        try:
            for step in sorted(steps):
                held.enter_context(plugin_lock(pipeline.step(step).job, lambda: signals.received is not None))
        except StopRequested:
            assert signals.received is not None
            print("INTERRUPTED while waiting for another day's run; nothing was started", file=sys.stderr)
            return 128 + signals.received
        # Verbose shows Meltano's own output as it comes: plain lines, never a live display through it.
        live = False if verbose else None
        with LiveProgress(live=live, render=lambda task, now: _running_line(pipeline, day, task, now)) as progress:
            display = _Display(pipeline, day, verbose, progress)
            for chains in plan(pipeline, steps, parallel=os.environ.get(PARALLEL_ENV, "1") != "0"):
                if signals.received is not None:
                    return 128 + signals.received
                code = _run_segment(pipeline, chains, day, signals, display, verbose)
                if code:
                    return code
    logs = settings.data_dir() / "logs" / day.isoformat()
    print(f"==> done: {pipeline.name} {', '.join(steps)} for {day} (logs: {logs})")
    return 0
