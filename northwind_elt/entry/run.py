"""`nw run`: the entry point of the day-by-day pipelines. Resolves the day once, runs each
step's Meltano job with the day pinned (through the protocol's job runner), records failures
and interruptions in the ledger, prints one line per step, and stops cleanly on a signal.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import signal
import sys
import time

from northwind_elt.core import ledger, settings
from northwind_elt.core.day import DayLayout
from northwind_elt.core.errors import rerun_command
from northwind_elt.core.locks import StopRequested, plugin_lock, step_lock
from northwind_elt.protocol.definition import Pipeline
from northwind_elt.protocol.meltano import (
    CONNECTION_TROUBLE,
    TASK_FIX,
    TASK_RERUN,
    Interrupted,
    Signals,
    find_cause,
    run_meltano_job,
    task_message,
    task_text,
)


def _hint(pipeline: Pipeline, step: str, cause: str | None) -> str:
    if not cause:
        return ""
    if "No space left on device" in cause:
        return f"\nFree space on the disk holding {settings.data_dir()}."
    if CONNECTION_TROUBLE.search(cause) and "Check the" not in cause and "check the" not in cause:
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


def run_step(pipeline: Pipeline, step: str, day: dt.date, signals: Signals, verbose: bool = False) -> int:
    """One `meltano run` of the step's job, its output in a log (and streamed with verbose)."""
    job = pipeline.step(step).job
    started = ledger.now()
    returncode, tail, log_path = run_meltano_job(job, day, signals, echo=verbose)
    if signals.received is not None:
        name = signal.Signals(signals.received).name
        _record(pipeline, day, step, "interrupted", started_at=started, error=f"stopped by {name}", log=log_path)
        print(
            f"\nINTERRUPTED: step '{step}' for {day} ({name}): its processes are stopped; "
            "nothing half-written is visible.\n"
            f"Rerun from that step: {rerun_command(step, day)}",
            file=sys.stderr,
        )
        raise Interrupted(signals.received)
    if returncode == 0 and ledger.success_since(pipeline.name, day, step, started):
        with contextlib.suppress(*ledger.WRITE_ERRORS):
            ledger.set_wall_seconds(pipeline.name, day, step, started, (ledger.now() - started).total_seconds())
        return 0
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
        log=log_path,
    )
    hint = _hint(pipeline, step, cause)
    # Quote only what the Cause, Fix and rerun lines do not already say.
    repeated = {f"ERROR: {cause}", f"Fix: {fix}"}
    said = [line for line in said if line not in repeated and not line.startswith("Then rerun: ")]
    if fix and fix.rstrip(".").lower() in hint.lower():
        fix = None  # the hint already says it
    print(
        f"\nFAILED: step '{step}' for {day} (meltano run {job} exited {returncode}).\n"
        + (f"Cause: {cause}{hint}\n" if cause else "")
        + (f"Fix: {fix}\n" if fix else "")
        + ("".join(f"  | {line}\n" for line in said) if not verbose else "")
        + f"Full log: {log_path}\n"
        f"Fix the cause, then rerun: {rerun}",
        file=sys.stderr,
    )
    return returncode or 1


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
    return (pipeline.name, step, day.isoformat(), "" if rows is None else f"{rows:,}", f"{seconds:.1f}", status)


def _line(row: tuple[str, ...]) -> str:
    name, step_name, iso, rows, seconds, status = row
    return f"{name:<10} {step_name:<17} {iso}  {rows:>9}  {seconds:>7}  {status}"


def run(pipeline: Pipeline, steps: tuple[str, ...], day: dt.date, verbose: bool = False) -> int:
    """Every step in order; one line per step (on a terminal shown as `running` while it runs)."""
    check_environment(pipeline, steps)
    layout = DayLayout.for_day(day)
    done: list[tuple[str, ...]] = []
    live = sys.stdout.isatty()
    with Signals() as signals, contextlib.ExitStack() as held:
        # One run per step and day: a second one fails at once instead of interleaving.
        for step in sorted(steps):
            held.enter_context(step_lock(layout, f"run-{pipeline.name}-{step}"))
        # Meltano keeps one run directory per plugin (catalog, config), shared by all days:
        # runs of the same job for other days wait their turn. Sorted order: no deadlock.
        try:
            for step in sorted(steps):
                held.enter_context(plugin_lock(pipeline.step(step).job, lambda: signals.received is not None))
            for step in steps:
                if signals.received is not None:
                    raise Interrupted(signals.received)
                if verbose:
                    print(f"==> {pipeline.name}: {step} for {day}", flush=True)
                elif live:  # the row now, completed in place when the step ends
                    print(_line((pipeline.name, step, day.isoformat(), "", "", "running...")), end="\r", flush=True)
                began, status = time.monotonic(), "failed"
                try:
                    code = run_step(pipeline, step, day, signals, verbose)
                    status = "success" if code == 0 else "failed"
                except Interrupted:
                    status = "interrupted"
                    raise
                finally:
                    done.append(_progress(pipeline, step, day, time.monotonic() - began, status))
                    print(("\x1b[2K" if live else "") + _line(done[-1]), flush=True)
                if code:
                    return code
        except Interrupted as stop:
            return 128 + stop.signum
        except StopRequested:
            assert signals.received is not None
            print("INTERRUPTED while waiting for another day's run; nothing was started", file=sys.stderr)
            return 128 + signals.received
    logs = settings.data_dir() / "logs" / day.isoformat()
    print(f"==> done: {pipeline.name} {', '.join(steps)} for {day} (logs: {logs})")
    return 0
