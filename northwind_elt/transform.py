"""dbt's outcome for the day, read from dbt's own run_results.json."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from northwind_elt import settings
from northwind_elt.errors import PipelineError
from northwind_elt.files import read_json


def run_results_path() -> Path:
    return settings.project_root() / "transform" / "target" / "run_results.json"


def failed_nodes(results: dict) -> list[str]:
    """Each node that did not pass, with its failing row count or error message."""
    failed = []
    for node in results.get("results", []):
        if node.get("status") in ("success", "pass", "skipped", "warn"):
            continue
        # test.<project>.<name>.<hash>: the name is what dbt prints and what a person looks for.
        parts = node["unique_id"].split(".")
        name = parts[2] if parts[0] == "test" and len(parts) > 2 else node["unique_id"]
        detail = f"{node['failures']} failing row(s)" if node.get("failures") else (node.get("message") or "")
        failed.append(f"{name} ({node['status']}: {detail.strip()})")
    return failed


def failures_since(since: dt.datetime) -> list[str] | None:
    """Failed dbt nodes of a run that started after `since`, or None if there is no such run."""
    path = run_results_path()
    if not path.exists() or dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC) < since:
        return None
    return failed_nodes(read_json(path))


def check_run(step: str, day: dt.date) -> dt.datetime:
    """The start of dbt's last run, which must be for `day` and must have passed."""
    path = run_results_path()
    if not path.exists():
        raise PipelineError(step, day, f"dbt left no results ({path}); dbt build did not run")
    results = read_json(path)
    built_for = (results.get("args", {}).get("vars") or {}).get("day")
    if built_for != day.isoformat():
        raise PipelineError(step, day, f"dbt's last run was for day {built_for!r}, not {day}")
    failures = failed_nodes(results)
    if failures:
        raise PipelineError(step, day, f"dbt build failed: {'; '.join(failures)}")
    generated = dt.datetime.fromisoformat(results["metadata"]["generated_at"].replace("Z", "+00:00"))
    return generated - dt.timedelta(seconds=results["elapsed_time"])
