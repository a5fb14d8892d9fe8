"""The pipeline definitions are the single source: Meltano's jobs and commands must match them."""

from __future__ import annotations

import yaml
from support import PROJECT

from northwind_elt.pipelines import PIPELINES
from northwind_elt.protocol.definition import EXPORT

MELTANO = yaml.safe_load((PROJECT / "meltano.yml").read_text())
JOBS = {job["name"]: job["tasks"] for job in MELTANO["jobs"]}
UTILITIES = yaml.safe_load((PROJECT / "plugins" / "utilities.meltano.yml").read_text())["plugins"]["utilities"]
NW_COMMANDS = next(u for u in UTILITIES if u["name"] == "nw")["commands"]


def test_every_step_is_a_job_wrapped_in_its_begin_and_commit_tasks() -> None:
    for pipeline in PIPELINES.values():
        for step in pipeline.steps:
            tasks = JOBS[step.job]
            if step.kind == EXPORT:
                assert tasks == [f"nw:{step.name}"]
                continue
            assert tasks[0] == f"nw:begin-{step.name}" and tasks[-1] == f"nw:commit-{step.name}", (step.name, tasks)
            assert len(tasks) == 3
            assert NW_COMMANDS[f"begin-{step.name}"]["args"] == f"begin {step.name}"
            assert NW_COMMANDS[f"commit-{step.name}"]["args"] == f"commit {step.name}"


def test_the_all_steps_job_is_the_steps_jobs_in_order() -> None:
    for pipeline in PIPELINES.values():
        expected = [task for step in pipeline.steps for task in JOBS[step.job]]
        assert JOBS[pipeline.all_steps_job] == expected


def test_the_schedule_enters_through_nw_run_so_the_day_is_resolved_once() -> None:
    for schedule in MELTANO["schedules"]:
        tasks = JOBS[schedule["job"]]
        entry = NW_COMMANDS[tasks[0].removeprefix("nw:")]["args"]
        assert (len(tasks) == 1 and entry in ("ads load", "ads archive")) or entry.startswith("run "), schedule


def test_the_ads_insert_job_is_the_second_half_of_ads_load() -> None:
    # A run whose backup is verified is completed by ads-insert: it must be exactly the rest of ads-load.
    assert JOBS["ads-load"][-len(JOBS["ads-insert"]) :] == JOBS["ads-insert"]
    assert JOBS["ads-load"].index("nw:ads-verify-backup") < JOBS["ads-load"].index(JOBS["ads-insert"][0])


def test_steps_run_after_what_they_need() -> None:
    for pipeline in PIPELINES.values():
        seen: set[str] = set()
        for step in pipeline.steps:
            assert set(step.needs) <= seen, step.name
            seen.add(step.name)


def test_plugins_know_nothing_of_the_project_package() -> None:
    offenders = [
        str(path.relative_to(PROJECT))
        for folder in ("extract", "load")
        for path in (PROJECT / folder).rglob("*")
        if path.is_file() and ".meltano" not in path.parts and "northwind_elt" in path.read_text(errors="ignore")
    ]
    assert offenders == []


def test_dbt_never_decides_what_today_is() -> None:
    sql = [p for p in (PROJECT / "transform").rglob("*") if p.suffix in (".sql", ".yml") and "target" not in p.parts]
    for path in sql:
        text = path.read_text().lower()
        for clock in ("now()", "current_date", "current_timestamp", "run_started_at"):
            assert clock not in text, f"{path} reads the clock ({clock})"
