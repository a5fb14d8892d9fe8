"""The level of each line a DAG task's command prints (airflow_callbacks.line_level): Airflow's
subprocess hook would log them all at INFO, where the task log's level filter hides a failure."""

from __future__ import annotations

import pytest

from northwind_elt.core.errors import ConfigError, PipelineError
from northwind_elt.entry.airflow_callbacks import OutputLevels, line_level

# Meltano's prefix on the lines it logs for a plugin or itself, as in a step's log.
AT = "2026-12-07T06:27:53.428232Z"


def meltano(level: str, who: str, text: str) -> str:
    return f"{AT} [{level:<9}] {who:<12} {text}\n"


# `nw run`'s report of a failed step (entry/run.py), line by line as the task prints it.
FAILED_STEP = [
    "FAILED: step 'load' for 2024-01-15 (meltano run load exited 1).",
    "Cause: load refused for 2024-01-15: extract-csv did not complete",
    "Check the analytics database (ANALYTICS_PG_* in .env).",
    "Fix: run the extract first",
    "  | gate: extract-csv has no committed manifest for 2024-01-15",
    "Full log: /data/logs/2024-01-15/load-20261207T062748.log",
    "Fix the cause, then rerun: nw run --date 2024-01-15 --from extract-csv",
]


def levels_of(lines: list[str]) -> list[str]:
    """The levels of a command's output lines, in order, as the DAGs' task logger gives them."""
    levels = OutputLevels()
    return [levels.level(line) for line in lines]


def test_every_line_of_a_failed_steps_report_is_an_error_its_hint_too() -> None:
    # The hint (the Cause's second line) says nothing an error would on its own: it is one as part of the report.
    output = ["northwind  load  2024-01-15  4.1  failed", "", *FAILED_STEP, "", "after the report"]
    assert levels_of(output) == ["info", "info", *["error"] * len(FAILED_STEP), "info", "info"]
    assert line_level("Check the analytics database (ANALYTICS_PG_* in .env).") == "info"


def test_a_warning_after_a_report_is_a_warning() -> None:
    assert levels_of([*FAILED_STEP[:2], "WARNING: 1 dbt test warned", "and its detail"]) == [
        "error",
        "error",
        "warning",
        "info",
    ]


def test_a_report_through_meltano_ends_where_another_program_logs() -> None:
    output = [
        meltano("info", "nw--northwind", "ERROR: transform for 2024-01-16: dbt's last run was for another day"),
        meltano("info", "nw--northwind", "(the run before it was interrupted)"),
        meltano("info", "dbt-postgres", "06:27:52  Completed successfully"),
        meltano("info", "nw--northwind", "done"),
    ]
    assert levels_of(output) == ["error", "error", "info", "info"]


def test_the_projects_own_error_message_is_an_error_with_its_fix_and_rerun_lines() -> None:
    # As `nw` prints a PipelineError (cli.py: "ERROR: <message>"), and as a task of a Meltano job
    # prints it, behind Meltano's prefix at [info].
    message = PipelineError("transform", "2024-01-16", "dbt's last run was for another day", fix="rerun it").message
    config = ConfigError("SOURCE_PG_PASSWORD is not set", "set it in .env").message
    for text in (message, config):
        lines = f"ERROR: {text}".splitlines()
        assert [line_level(line) for line in lines] == ["error"] * len(lines), lines
        through_meltano = [meltano("info", "nw--northwind", line) for line in lines]
        assert [line_level(line) for line in through_meltano] == ["error"] * len(lines), through_meltano


@pytest.mark.parametrize(
    ("line", "level"),
    [
        # Meltano's own level, when it says more than info.
        (meltano("error", "meltano", "Block run completed"), "error"),
        (meltano("warning", "meltano", "Environment 'dev' is active"), "warning"),
        # ... but not the warning every `meltano run --force` gives: the project's locks guard each job.
        (meltano("warning", "meltano", "Force option is enabled, ignoring stale job check."), "info"),
        (meltano("info", "meltano", "Run completed"), "info"),
        # dbt, through Meltano at [info]: a failed node and a failed test are errors, a warned test a warning.
        (meltano("info", "dbt-postgres", "06:27:52  1 of 32 ERROR creating sql view model analytics.stg"), "error"),
        (meltano("info", "dbt-postgres", "06:27:52  Failure in test not_null_orders_id (models/x.yml)"), "error"),
        (meltano("info", "dbt-postgres", "06:27:52  Database Error in model stg_orders (models/stg.sql)"), "error"),
        (meltano("info", "dbt-postgres", "06:27:52  7 of 32 WARN 2 accepted_values_orders_status"), "warning"),
        (meltano("info", "dbt-postgres", "06:27:52  Done. PASS=31 WARN=0 ERROR=0 SKIP=0 NO-OP=1 TOTAL=32"), "info"),
        (meltano("info", "dbt-postgres", "06:27:52  31 of 32 OK created sql incremental model a.b"), "info"),
        # A plugin's exception, and a Singer SDK plugin's own error line.
        (meltano("info", "tap-csv", "Traceback (most recent call last):"), "error"),
        (meltano("info", "tap-csv", "psycopg.OperationalError: connection refused"), "error"),
        (meltano("info", "target-pg", "2026-12-07 06:27:52,101 | ERROR    | target-pg | load failed"), "error"),
        (meltano("info", "target-pg", "2026-12-07 06:27:52,101 | INFO     | target-pg | 2155 rows"), "info"),
        # The project's other reports: an interruption, a warning, a backfill's failed days.
        ("INTERRUPTED: step 'load' for 2024-01-15 (SIGTERM): its processes are stopped", "error"),
        ("Rerun from that step: nw run --date 2024-01-15 --from load", "error"),
        ("WARNING: 1 dbt test warned", "warning"),
        ("FAILED days: 2024-01-10 (people_load failed on try 3).", "error"),
        # What is not a failure stays at info, even when it names one.
        ("northwind  load              2024-01-15             4.1  failed", "info"),
        ("the step's ERROR count: 0", "info"),
        ("Running command: ['/usr/bin/bash', '-c', 'nw --date 2024-01-15 run --verbose load']", "info"),
    ],
)
def test_a_lines_level_is_what_the_line_says(line: str, level: str) -> None:
    assert line_level(line) == level
