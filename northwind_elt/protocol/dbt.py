"""dbt's outcome for the day, read from dbt's own run_results.json and manifest.json.

Each failed or warning test is named with its failing row count and the table that
holds those rows (dbt stores them, `store_failures`, in the day's audit schema).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from northwind_elt.core import settings, text
from northwind_elt.core.errors import PipelineError
from northwind_elt.core.files import read_json

# "no-op": nodes dbt lists but does not build (exposures).
PASSED = ("success", "pass", "skipped", "no-op")


def target_dir(target_path: str) -> Path:
    """A build's --target-path as dbt saw it: in the data directory (`${NW_DATA_DIR}/...`), or
    relative to the dbt project."""
    data_dir = "${" + settings.DATA_DIR_ENV + "}"
    if target_path.startswith(data_dir):
        return settings.data_dir() / target_path.removeprefix(data_dir).lstrip("/")
    return settings.project_root() / "transform" / target_path


def run_results_path(target_path: str) -> Path:
    return target_dir(target_path) / "run_results.json"


def built_for(results: dict) -> str | None:
    """The day a build was for: its `day` var if one was given, else RUN_DATE as dbt recorded it
    (protocol/meltano.py passes it as DBT_ENV_CUSTOM_ENV_RUN_DATE); None when neither was."""
    given = (results.get("args", {}).get("vars") or {}).get("day")
    return given or (results.get("metadata", {}).get("env") or {}).get("RUN_DATE") or None


def _by_day(relation: str, day: str | None) -> str:
    """A stored-failures relation of a test that keeps them by day (macros/audit_by_day.sql):
    in the day's schema, <schema>_YYYY_MM_DD, which dbt's parsed relation name cannot know."""
    parts = relation.split(".")
    if not day or len(parts) != 3 or not parts[1].endswith('"'):
        return relation
    parts[1] = parts[1][:-1] + "_" + day.replace("-", "_") + '"'
    return ".".join(parts)


def _relations(target_path: str, day: str | None) -> dict[str, str]:
    """Where each node's rows live (for a test with stored failures: its audit table)."""
    path = target_dir(target_path) / "manifest.json"
    if not path.exists():
        return {}
    nodes = read_json(path).get("nodes", {})
    found = {}
    for uid, node in nodes.items():
        if relation := node.get("relation_name"):
            by_day = ((node.get("config") or {}).get("meta") or {}).get("audit_by_day")
            found[uid] = _by_day(relation, day) if by_day else relation
    return found


def describe(node: dict, relations: dict[str, str]) -> str:
    """'name (fail: 3 failing rows, see "schema"."table")' for a test; the error for a model."""
    # test.<project>.<name>.<hash>: the name is what dbt prints and what a person looks for.
    parts = node["unique_id"].split(".")
    is_test = parts[0] == "test" and len(parts) > 2
    name = parts[2] if is_test else node["unique_id"]
    if is_test and node.get("failures"):
        where = relations.get(node["unique_id"]) or node.get("relation_name")
        detail = text.plural(node["failures"], "failing row") + (f", see {where}" if where else "")
    else:
        detail = (node.get("message") or "").strip()
    return f"{name} ({node['status']}: {detail})"


def outcome(results: dict, target_path: str) -> tuple[list[str], list[str]]:
    """The failed nodes and the warnings of a dbt run, each described."""
    relations = _relations(target_path, built_for(results))
    failed, warned = [], []
    for node in results.get("results", []):
        if node.get("status") == "warn":
            warned.append(describe(node, relations))
        elif node.get("status") not in PASSED:
            failed.append(describe(node, relations))
    return failed, warned


def failures_since(since: dt.datetime, target_path: str) -> list[str] | None:
    """Failed dbt nodes of a run that started after `since`, or None if there is no such run."""
    path = run_results_path(target_path)
    if not path.exists() or dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC) < since:
        return None
    return outcome(read_json(path), target_path)[0]


def check_run(step: str, day: dt.date, target_path: str, since: dt.datetime | None = None) -> list[str]:
    """dbt's last run must be for `day` and have passed; returns its warnings. A run whose day
    was not recorded (a bare `meltano run` of the job, RUN_DATE set by hand) counts as the day's
    when it wrote its results after `since` (the step's begin, which pinned the day)."""
    path = run_results_path(target_path)
    if not path.exists():
        raise PipelineError(step, day, f"dbt left no results ({path}); dbt build did not run")
    results = read_json(path)
    built = built_for(results)
    fresh = since is not None and dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC) >= since
    if built != day.isoformat() and not (built is None and fresh):
        raise PipelineError(step, day, f"dbt's last run was for day {built!r}, not {day}")
    failed, warned = outcome(results, target_path)
    if failed:
        raise PipelineError(step, day, f"dbt build failed: {'; '.join(failed)}")
    return warned
