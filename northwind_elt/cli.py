"""`nw`: the project's command line, used by the Makefile, Meltano jobs and Airflow.

nw db up|start|stop|status      the embedded Postgres server
nw run JOB [--date D]           meltano run JOB for day D, recorded in the ledger
nw run --from STEP [--date D]   the day's steps from STEP to export
nw status [--date D]            the day's steps and what to rerun
nw publish STEP                 (Meltano task) commit an extract step's files
nw publish-load                 (Meltano task) commit the loaded day
nw transform-done               (Meltano task) record dbt's result
nw export                       (Meltano task) write the day's CSV and JSON
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import os
import re
import sqlite3
import subprocess
import sys
from collections import deque
from pathlib import Path
from typing import IO

from northwind_elt import ledger, settings
from northwind_elt.day import DAY_ENV, STEPS, DayLayout, InvalidDay, parse_day, rerun_command
from northwind_elt.locks import AlreadyRunning, plugin_lock, step_lock

JOB_STEPS = {step: (step,) for step in STEPS} | {"daily": STEPS}


def _load_env_file() -> None:
    env_file = settings.project_root() / ".env"
    if env_file.exists():
        from dotenv import load_dotenv

        load_dotenv(env_file, override=False)


def _apply_date(date: str | None) -> None:
    if date is not None:
        os.environ[DAY_ENV] = date


def _fail(message: str) -> int:
    print(f"ERROR: {ledger.redact(message)}", file=sys.stderr)
    return 1


def cmd_db(args: argparse.Namespace) -> int:
    from northwind_elt import embedded

    if args.action == "up":
        embedded.up(settings.project_root() / "data" / "northwind.sql")
        print(f"Postgres is up on 127.0.0.1:{embedded.port()} (databases: northwind, analytics)")
    elif args.action == "start":
        embedded.start()
    elif args.action == "stop":
        embedded.stop()
        print("Postgres stopped")
    else:
        print("running" if embedded.is_running() else "stopped")
    return 0


# Lines worth quoting from a failed run's output, most specific first.
_CAUSE_PATTERNS = (
    re.compile(r"(?:ERROR: |CsvContractError: |GateRefused: )(.+)"),
    re.compile(r"((?:connection to server|could not connect|password authentication failed|FATAL:).+)"),
    re.compile(r"\b(\w+(?:Error|Exception): .+)"),
    re.compile(r"\[error\s*\] meltano\s+((?!Block run completed).+)"),
)
_CONNECTION_TROUBLE = re.compile(r"connection|connect|password authentication|timeout expired|Name or service", re.I)


def _cause(lines: list[str]) -> str | None:
    for pattern in _CAUSE_PATTERNS:
        for line in reversed(lines):
            if found := pattern.search(line):
                return found.group(1).strip()
    return None


def _connection_hint(step: str) -> str:
    if step.startswith("extract"):
        return f"the source database {settings.source_pg().describe()} (SOURCE_PG_* in .env)"
    return f"the analytics database {settings.analytics_pg().describe()} (ANALYTICS_PG_* in .env)"


def _meltano() -> str:
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


def _hint(step: str, cause: str | None) -> str:
    if not cause:
        return ""
    if "No space left on device" in cause:
        return f"\nFree space on the disk holding {settings.data_dir()}."
    if _CONNECTION_TROUBLE.search(cause):
        return f"\nCheck {_connection_hint(step)}."
    return ""


def _run_job(job: str, day: dt.date) -> int:
    """One `meltano run`, output streamed and kept in a log; a failure is pinned on its step."""
    started = ledger.now()
    log = _RunLog(settings.data_dir() / "logs" / day.isoformat() / f"{job}-{started:%Y%m%dT%H%M%S}.log")
    tail: deque[str] = deque(maxlen=60)
    env = {**os.environ, DAY_ENV: day.isoformat()}
    with subprocess.Popen(
        # --force: our per-day flocks guard concurrency precisely (released when a process
        # dies), where Meltano's own guard would block a rerun after a kill for minutes.
        [_meltano(), "run", "--force", job],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=settings.project_root(),
    ) as proc:
        assert proc.stdout is not None
        for raw_line in proc.stdout:
            line = ledger.redact(raw_line)  # no password reaches the terminal or the log
            sys.stdout.write(line)
            log.write(line)
            tail.append(line)
    log.close()
    if proc.returncode == 0:
        return 0
    failed = next((s for s in JOB_STEPS[job] if not ledger.success_since(day, s, started)), JOB_STEPS[job][-1])
    cause = _cause(list(tail))
    latest = ledger.latest(day).get(failed)
    if not (latest and latest["status"] == "failed" and latest["finished_at"] >= started.isoformat(timespec="seconds")):
        error = f"{cause}\n---\n" if cause else ""
        try:
            ledger.record(day, failed, "failed", started_at=started, error=error + "".join(tail)[-3000:])
        except (OSError, sqlite3.Error) as err:
            print(f"(ledger {ledger.ledger_path()} not updated: {err})", file=sys.stderr)
    print(
        f"\nFAILED: step '{failed}' for {day} (meltano run {job} exited {proc.returncode}).\n"
        + (f"Cause: {cause}{_hint(failed, cause)}\n" if cause else "")
        + f"Full log: {log.path}\n"
        f"Fix the cause, then rerun from that step: make run DATE={day} FROM={failed}",
        file=sys.stderr,
    )
    return proc.returncode or 1


def cmd_run(args: argparse.Namespace) -> int:
    day = DayLayout.current().day
    jobs = list(STEPS[STEPS.index(args.from_step) :]) if args.from_step else [args.job or "daily"]
    layout = DayLayout.current()
    steps = sorted({s for job in jobs for s in JOB_STEPS[job]})
    with contextlib.ExitStack() as held:
        # One run per step and day: a second one fails at once instead of interleaving.
        for step in steps:
            held.enter_context(step_lock(layout, f"run-{step}"))
        # Meltano keeps one run directory per plugin (catalog, config), shared by all days:
        # runs of the same job for other days wait their turn. Sorted order: no deadlock.
        for step in steps:
            held.enter_context(plugin_lock(step))
        for job in jobs:
            print(f"==> {job} for {day}", flush=True)
            code = _run_job(job, day)
            if code:
                return code
    print(f"==> done: {', '.join(jobs)} for {day}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    layout = DayLayout.current()
    entries = ledger.latest(layout.day)
    print(f"Day {layout.iso}")
    print(f"{'step':<17}{'status':<9}{'rows':>8}{'seconds':>9}  {'finished (UTC)':<27}error")
    first_not_done = None
    for step in STEPS:
        entry = entries.get(step)
        status = entry["status"] if entry else "not run"
        if status != "success" and first_not_done is None:
            first_not_done = step
        rows = "" if not entry or entry["rows"] is None else entry["rows"]
        seconds = "" if not entry or entry["duration_s"] is None else f"{entry['duration_s']:.1f}"
        finished = entry["finished_at"] if entry else ""
        error = (entry["error"] or "").strip().splitlines()[0][:100] if entry and entry["error"] else ""
        print(f"{step:<17}{status:<9}{rows!s:>8}{seconds:>9}  {finished:<27}{error}")
    if first_not_done is None:
        print("All steps done.")
    else:
        print(f"Rerun from the first step not done: make run DATE={layout.iso} FROM={first_not_done}")
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from northwind_elt.publish import publish_extract

    rows = publish_extract(DayLayout.current(), args.step)
    print(f"{args.step}: published {rows} rows for {DayLayout.current().iso}")
    return 0


def cmd_publish_load(_: argparse.Namespace) -> int:
    from northwind_elt.load import publish_load

    rows = publish_load(DayLayout.current())
    print(f"load: published {rows} rows for {DayLayout.current().iso}")
    return 0


def cmd_transform_done(_: argparse.Namespace) -> int:
    from northwind_elt.transform import record_transform

    record_transform(DayLayout.current())
    return 0


def cmd_export(_: argparse.Namespace) -> int:
    from northwind_elt.export import export_day

    layout = DayLayout.current()
    rows = export_day(layout)
    print(f"export: {rows} rows to {layout.output_file('csv')} and {layout.output_file('json')}")
    return 0


def cmd_day(_: argparse.Namespace) -> int:
    print(DayLayout.current().iso)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nw", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--date", help="day to process, YYYY-MM-DD (default: $RUN_DATE, else today UTC)")
    # --date is accepted after the subcommand too: `nw run daily --date 2024-01-15`.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--date", default=argparse.SUPPRESS, help="day to process, YYYY-MM-DD")
    sub = parser.add_subparsers(dest="command", required=True)
    add = functools.partial(sub.add_parser, parents=[common])
    db = add("db")
    db.add_argument("action", choices=["up", "start", "stop", "status"])
    db.set_defaults(func=cmd_db)
    run = add("run")
    run.add_argument("job", nargs="?", choices=sorted(JOB_STEPS))
    run.add_argument("--from", dest="from_step", choices=STEPS)
    run.set_defaults(func=cmd_run)
    add("status").set_defaults(func=cmd_status)
    publish = add("publish")
    publish.add_argument("step", choices=["extract-postgres", "extract-csv"])
    publish.set_defaults(func=cmd_publish)
    add("publish-load").set_defaults(func=cmd_publish_load)
    add("transform-done").set_defaults(func=cmd_transform_done)
    add("export").set_defaults(func=cmd_export)
    add("day").set_defaults(func=cmd_day)
    return parser


def main(argv: list[str] | None = None) -> int:
    _load_env_file()
    args = build_parser().parse_args(argv)
    try:
        # Validate the day before anything is written, whichever command runs.
        if args.date is not None:
            parse_day(args.date)
        _apply_date(args.date)
        if args.command not in ("db",):
            DayLayout.current()
        return args.func(args)
    except (InvalidDay, AlreadyRunning) as err:
        return _fail(str(err))
    except Exception as err:
        step = {
            "publish": getattr(args, "step", "extract"),
            "publish-load": "load",
            "export": "export",
            "transform-done": "transform",
        }.get(args.command)
        if step:
            day = DayLayout.current().day
            ledger.record(day, step, "failed", error=f"{type(err).__name__}: {err}")
            hint = "" if "make run" in str(err) else f"\nFix the cause, then rerun: {rerun_command(step, day)}"
            return _fail(f"step {step} for {day} failed: {err}{hint}")
        raise


if __name__ == "__main__":
    sys.exit(main())
