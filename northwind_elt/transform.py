"""Record dbt's outcome for the day in the ledger, from dbt's own run_results.json."""

from __future__ import annotations

import datetime as dt

from northwind_elt import ledger, settings
from northwind_elt.day import DayLayout, rerun_command, today_utc
from northwind_elt.files import read_json

TRANSFORM_STEP = "transform"


class TransformError(RuntimeError):
    pass


def record_transform(layout: DayLayout) -> None:
    results_path = settings.project_root() / "transform" / "target" / "run_results.json"
    results = read_json(results_path)
    built_for = (results.get("args", {}).get("vars") or {}).get("day")
    # An empty var means "today, UTC" to the models (macros/run_day.sql), as to every step.
    if built_for == "":
        built_for = today_utc().isoformat()
    if built_for != layout.iso:
        raise TransformError(
            f"dbt's last run was for day {built_for!r}, not {layout.iso}; "
            f"rerun {rerun_command('transform', layout.day)}"
        )
    failures = [r["unique_id"] for r in results["results"] if r["status"] not in ("success", "pass")]
    if failures:
        raise TransformError(f"dbt reported failures: {failures}")
    generated = dt.datetime.fromisoformat(results["metadata"]["generated_at"].replace("Z", "+00:00"))
    started = generated - dt.timedelta(seconds=results["elapsed_time"])
    ledger.record(layout.day, TRANSFORM_STEP, "success", started_at=started)
