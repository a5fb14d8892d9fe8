"""What the DAGs' tasks use from the project (standard library only: Airflow's virtualenv does not
install the project): the failure callback, and the level of each line a task's command prints.

A failed try that `nw run` (or `nw padam`, `nw ads`) could not record — killed, timed out, never started
because Airflow's task API did not answer — goes into the pipeline's ledger through
`nw airflow record-failure`, so `nw status` shows it. The callback runs in the task's process,
or in the dag processor when the task never ran.

Airflow's subprocess hook logs every output line at INFO, where the task log's level filter hides
a failure: `line_level` says which lines are the project's errors (its FAILED/ERROR/INTERRUPTED
report with the Cause, Fix and rerun lines), Meltano's, dbt's or a plugin's errors and warnings.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from northwind_elt.protocol.definition import Pipeline, Step

PROJECT_ROOT = Path(os.environ.get("NW_PROJECT_ROOT") or Path(__file__).resolve().parents[2])
NW = os.environ.get("NW_BIN") or str(PROJECT_ROOT / ".venv" / "bin" / "nw")


def failure_recorder(pipeline: str, step_of_task: Mapping[str, str]) -> Callable[[dict], None]:
    """A callback recording a failed try of a task (task id -> ledger step) of `pipeline` on the run's day."""

    def record(context: dict) -> None:
        ti = context["ti"]
        step = step_of_task.get(ti.task_id)
        if step is None:
            return
        where = f"DAG {ti.dag_id}, run {context.get('run_id')}, task {ti.task_id}, try {ti.try_number}"
        reason = str(context.get("exception") or "the task failed")[:2000]
        since = ["--since", ti.start_date.isoformat()] if getattr(ti, "start_date", None) else []
        command = [NW, "airflow", "record-failure", pipeline, step, context["ds"], "--reason", reason]
        subprocess.run([*command, "--where", where, *since], cwd=str(PROJECT_ROOT), timeout=120, check=False)

    return record


def failure_callbacks(pipeline: str, step_of_task: Mapping[str, str]) -> dict:
    """default_args entries: record a failed try, and a try that will be retried, in the ledger."""
    record = failure_recorder(pipeline, step_of_task)
    return {"on_failure_callback": record, "on_retry_callback": record}


def steps_of_tasks(pipeline: Pipeline, steps: Iterable[Step]) -> dict[str, str]:
    """Task id -> ledger step, for the steps whose failures the callback can record under the run's
    unit: not a step that takes no unit (PADAM's prepare, which records itself), whose
    Airflow failure would otherwise be recorded a second time, under another key."""
    return {step.task_id: step.name for step in steps if pipeline.runs_for_one_unit(step.name)}


# Meltano's prefix on a line it logs: "<timestamp> [<level>] <plugin or meltano>  <text>".
_MELTANO_LINE = re.compile(r"^\S+Z \[\s*(?P<level>\w+)\s*\] (?P<who>\S+)\s+(?P<text>.*)$")
_DBT_TIME = re.compile(r"^\d\d:\d\d:\d\d\s+")
# The project's failure report (nw run, nw padam, nw ads, nw airflow): every line of it, so a
# filter on ERROR shows the step, the cause, the fix and the command to rerun together.
_PROJECT_ERROR = (
    r"ERROR: |FAILED[: ]|INTERRUPTED\b|Cause: |Fix: |Fix the cause|Then rerun: |Rerun from |Full log: |  \| "
)
_ERROR_TEXT = re.compile(
    rf"^(?:{_PROJECT_ERROR})"
    # dbt: a failed node, its error, the summary of a run with errors.
    r"|^\d+ of \d+ (?:ERROR|FAIL)\b|^(?:Database|Compilation|Runtime|Parsing) Error\b|^Failure in test\b"
    r"|^Completed with \d+ errors?\b|^Encountered an error"
    # Python's report of an exception, and a Singer SDK plugin's own error lines.
    r"|^Traceback \(most recent call last\)|^[\w.]+(?:Error|Exception)(?::|$)|\|\s*(?:ERROR|CRITICAL)\s*\|"
)
_WARNING_TEXT = re.compile(
    r"^WARNING: |^\d+ of \d+ WARN\b|^Warning in test\b|^Completed with \d+ warnings?\b|\|\s*WARNING\s*\|"
)
# Meltano's warning on every `meltano run --force`: the project's own locks guard each job's runs.
_EXPECTED_WARNING = re.compile(r"^Force option is enabled")


# The first line of a report of the project's that may go on over lines of plain text (a hint).
_REPORT_START = re.compile(r"^(?:ERROR: |FAILED: |INTERRUPTED: )")


def _parts(line: str) -> tuple[str, str, str]:
    """(Meltano's level or "info", who logged it: a plugin, meltano or "" for a line of the command's
    own, the text without Meltano's prefix nor dbt's time)."""
    text, said, who = line.rstrip("\n"), "info", ""
    if meltano := _MELTANO_LINE.match(text):
        text, said, who = meltano["text"], meltano["level"].lower(), meltano["who"]
    return said, who, _DBT_TIME.sub("", text)


def line_level(line: str) -> str:
    """The level a line of a task's output belongs at in Airflow's task log: "error", "warning"
    or "info". A Meltano line keeps the level Meltano gave it unless its text says more (a
    plugin's ERROR, logged by Meltano at info)."""
    said, _, text = _parts(line)
    if said in ("error", "critical", "exception") or _ERROR_TEXT.search(text):
        return "error"
    if said == "warning" and _EXPECTED_WARNING.search(text):
        return "info"
    if said == "warning" or _WARNING_TEXT.search(text):
        return "warning"
    return "info"


class OutputLevels:
    """`line_level` for the lines of one command's output, in order: every line of a report of the
    project's (ERROR:, FAILED:, INTERRUPTED:) is an error, its hints too, up to the blank line
    that ends it, a warning, or a line another program logged."""

    def __init__(self) -> None:
        self._report_by: str | None = None  # who is writing a report: a plugin, or "" for the command

    def level(self, line: str) -> str:
        level = line_level(line)
        _, who, text = _parts(line)
        if _REPORT_START.match(text):
            self._report_by = who
        elif not text.strip() or who != self._report_by or level == "warning":
            self._report_by = None  # a warning is a message of its own, after the report
        elif self._report_by is not None:
            return "error"
        return level
