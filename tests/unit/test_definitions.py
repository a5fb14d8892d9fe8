"""The pipeline definitions are the single source: Meltano's files, jobs, schedules and commands
must match them, and every path, name and column contract that both Python and YAML spell out
must be the same in both.

The Meltano files are read as Meltano reads them: meltano.yml, then every file its
include_paths match, merged (a name may appear in one file only).
"""

from __future__ import annotations

import ast
import datetime as dt
import json
import re
import shlex
import string
from pathlib import Path

import support
import yaml
from support import PROJECT

from northwind_elt.core.day import DayLayout
from northwind_elt.pipelines import PIPELINES, REGISTRY
from northwind_elt.pipelines.ads.config import RUN_ID_ENV, BackupKeys
from northwind_elt.pipelines.ads.store import LANDING as ADS_LANDING
from northwind_elt.pipelines.padam.warehouse import LANDING_SCHEMA as PADAM_LANDING_SCHEMA
from northwind_elt.protocol.definition import EXPORT, EXTRACT, LOAD, Pipeline
from northwind_elt.protocol.swap import staging_schema

MELTANO = yaml.safe_load((PROJECT / "meltano.yml").read_text())
INCLUDED = {
    path.relative_to(PROJECT).as_posix(): yaml.safe_load(path.read_text())
    for pattern in MELTANO["include_paths"]
    for path in sorted(PROJECT.glob(pattern))
}
FILES = {"meltano.yml": MELTANO, **INCLUDED}
# The registry as imported: a pipeline a test registers later is not one of the project's files.
REGISTERED = dict(REGISTRY)


def jobs_in(doc: dict) -> dict[str, list[str]]:
    return {job["name"]: job["tasks"] for job in doc.get("jobs") or []}


def schedules_in(doc: dict) -> set[tuple[str, str]]:
    return {(schedule["name"], schedule["job"]) for schedule in doc.get("schedules") or []}


def plugins_in(doc: dict) -> dict[str, dict]:
    return {plugin["name"]: plugin for kind in (doc.get("plugins") or {}).values() for plugin in kind}


JOBS = {name: tasks for doc in FILES.values() for name, tasks in jobs_in(doc).items()}
SCHEDULES = [schedule for doc in FILES.values() for schedule in doc.get("schedules") or []]
PLUGINS = {name: plugin for doc in FILES.values() for name, plugin in plugins_in(doc).items()}
# Each pipeline's `nw` and dbt commands are on its own inherited utilities (nw--<name>,
# dbt-postgres--<name>), in its own file; the shared bases keep the commands of no pipeline.
NW_UTILITIES = [name for name, plugin in PLUGINS.items() if name == "nw" or plugin.get("inherit_from") == "nw"]
NW_COMMANDS = {f"{u}:{c}": command for u in NW_UTILITIES for c, command in PLUGINS[u].get("commands", {}).items()}


def command_of(task: str) -> dict:
    """A `plugin:command` task's command, from the plugin that defines it."""
    plugin, _, command = task.partition(":")
    return PLUGINS[plugin]["commands"][command]


DAY = dt.date(2024, 1, 15)
DATA_DIR = Path("/data-dir")
RUN_ID = "run-1"
VARIABLES = {
    "NW_DATA_DIR": str(DATA_DIR),
    "RUN_DATE": DAY.isoformat(),
    RUN_ID_ENV: RUN_ID,
    "MELTANO_PROJECT_ROOT": str(PROJECT),
}


def own_file(pipeline: Pipeline) -> dict:
    return INCLUDED[pipeline.meltano_file]


def jobs_named_by(pipeline: Pipeline) -> set[str]:
    """Every job the definition names: its steps', its all-steps job, its schedules'."""
    named = {step.job for step in pipeline.steps if step.job}
    named |= {pipeline.all_steps_job} if pipeline.all_steps_job else set()
    return named | {job for _, job in pipeline.meltano_schedules}


def plugins_run_by(tasks: list[str]) -> list[str]:
    """The plugins a job's tasks run as a block (`tap target`); `plugin:command` tasks excluded."""
    return [name for task in tasks if ":" not in task for name in task.split()]


def plugins_used_by(tasks: list[str]) -> set[str]:
    """Every plugin a job's tasks use: the blocks' and the commands' (`plugin:command`)."""
    return {name for task in tasks for name in task.partition(":")[0].split()}


def expanded(value: object) -> object:
    """A setting as the plugin receives it, with the test's day, data directory and run id."""
    if isinstance(value, str):
        return string.Template(value).substitute(VARIABLES)
    if isinstance(value, list):
        return [expanded(item) for item in value]
    if isinstance(value, dict):
        return {key: expanded(item) for key, item in value.items()}
    return value


def flattened(config: dict, prefix: str = "") -> dict[str, object]:
    found: dict[str, object] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            found |= flattened(value, f"{prefix}{key}.")
        else:
            found[f"{prefix}{key}"] = value
    return found


def settings_of(name: str) -> dict[str, object]:
    """A plugin's resolved settings (dotted names), Meltano's way: the parent's, then the plugin's
    setting values, then its config."""
    plugin = PLUGINS[name]
    resolved = settings_of(plugin["inherit_from"]) if "inherit_from" in plugin else {}
    for setting in plugin.get("settings") or []:
        if "value" in setting:
            resolved[setting["name"]] = setting["value"]
    return resolved | flattened(plugin.get("config") or {})


# -- the jobs ----------------------------------------------------------------------------


def test_every_step_is_a_job_wrapped_in_its_begin_and_commit_tasks() -> None:
    for pipeline in PIPELINES.values():
        for step in pipeline.steps:
            tasks = JOBS[step.job]
            if step.kind == EXPORT:
                assert tasks == [f"nw--{pipeline.name}:{step.name}"]
                continue
            begin, commit = f"nw--{pipeline.name}:begin-{step.name}", f"nw--{pipeline.name}:commit-{step.name}"
            assert tasks[0] == begin and tasks[-1] == commit, (step.name, tasks)
            assert len(tasks) == 3
            assert command_of(begin)["args"] == f"begin {step.name}"
            assert command_of(commit)["args"] == f"commit {step.name}"


def test_the_all_steps_job_is_the_steps_jobs_in_order() -> None:
    for pipeline in PIPELINES.values():
        expected = [task for step in pipeline.steps for task in JOBS[step.job]]
        assert JOBS[pipeline.all_steps_job] == expected
    # Only a day pipeline has one: a month's or a run's steps are started one by one by nw.
    assert [p.name for p in REGISTERED.values() if p.all_steps_job and p.name not in PIPELINES] == []


def test_the_schedule_enters_through_nw_run_so_the_day_is_resolved_once() -> None:
    assert SCHEDULES
    for schedule in SCHEDULES:
        tasks = JOBS[schedule["job"]]
        entry = command_of(tasks[0])["args"]
        assert (len(tasks) == 1 and entry in ("ads load", "ads archive")) or entry.startswith("run "), schedule


def test_the_ads_insert_job_is_the_second_half_of_ads_load() -> None:
    # A run whose backup is verified is completed by ads-insert: it must be exactly the rest of ads-load.
    assert JOBS["ads-load"][-len(JOBS["ads-insert"]) :] == JOBS["ads-insert"]
    assert JOBS["ads-load"].index("nw--ads:ads-verify-backup") < JOBS["ads-load"].index(JOBS["ads-insert"][0])


def test_steps_run_after_what_they_need() -> None:
    for pipeline in REGISTERED.values():
        seen: set[str] = set()
        for step in pipeline.steps:
            assert set(step.needs) <= seen, step.name
            seen.add(step.name)


def test_every_task_is_a_command_or_a_plugin_meltano_knows() -> None:
    for job, tasks in JOBS.items():
        for task in tasks:
            plugin, _, command = task.partition(":")
            if command:
                assert command in PLUGINS[plugin]["commands"], (job, task)
            else:
                assert set(task.split()) <= set(PLUGINS), (job, task)


def test_every_nw_command_of_meltano_is_one_nw_accepts() -> None:
    from northwind_elt.entry.cli import build_parser

    parser = build_parser()
    for name, command in NW_COMMANDS.items():
        try:
            parser.parse_args(shlex.split(command["args"]))
        except SystemExit:
            raise AssertionError(f"{name}: `nw {command['args']}` is not a command nw accepts") from None


# -- one Meltano file per pipeline --------------------------------------------------------


def test_meltano_yml_is_the_project_alone_and_includes_every_pipelines_file() -> None:
    assert {"jobs", "schedules", "plugins"} & set(MELTANO) == set()
    assert {"ads", "northwind", "padam", "people"} <= set(REGISTERED)
    for pipeline in REGISTERED.values():
        assert pipeline.meltano_file.startswith("pipelines/"), pipeline.name
        assert pipeline.meltano_file in INCLUDED, f"{pipeline.meltano_file}: not matched by meltano.yml's include_paths"
    # No pipeline file without its definition.
    pipeline_files = {name for name in INCLUDED if name.startswith("pipelines/")}
    assert pipeline_files == {p.meltano_file for p in REGISTERED.values()}


def test_every_job_and_schedule_of_a_pipeline_is_in_its_own_file_and_no_other() -> None:
    for pipeline in REGISTERED.values():
        own_jobs = jobs_in(own_file(pipeline))
        named = jobs_named_by(pipeline)
        assert named - set(own_jobs) == set(), f"{pipeline.name}: jobs missing from {pipeline.meltano_file}"
        assert schedules_in(own_file(pipeline)) == set(pipeline.meltano_schedules), pipeline.name
        for name, doc in FILES.items():
            if name != pipeline.meltano_file:
                assert named & set(jobs_in(doc)) == set(), f"{pipeline.name}'s jobs defined in {name}"
                assert set(pipeline.meltano_schedules) & schedules_in(doc) == set(), name
    # A schedule or job outside the pipelines' files would belong to no pipeline.
    for name, doc in FILES.items():
        if not name.startswith("pipelines/"):
            assert jobs_in(doc) == {} and schedules_in(doc) == set(), name


def test_a_pipelines_file_runs_nothing_its_pipeline_does_not() -> None:
    # A job its definition does not name (ads-insert) runs only tasks of the jobs it names.
    for pipeline in REGISTERED.values():
        own_jobs = jobs_in(own_file(pipeline))
        named = jobs_named_by(pipeline)
        tasks_of_named = {task for job in named for task in own_jobs[job]}
        for job, tasks in own_jobs.items():
            if job not in named:
                assert set(tasks) <= tasks_of_named, (pipeline.name, job)


def test_a_pipelines_commands_are_on_its_own_utilities_so_adding_one_touches_no_shared_file() -> None:
    for pipeline in REGISTERED.values():
        own_plugins = set(plugins_in(own_file(pipeline)))
        for job, tasks in jobs_in(own_file(pipeline)).items():
            for task in tasks:
                plugin, _, command = task.partition(":")
                assert not command or plugin in own_plugins, f"{pipeline.name}'s job {job} runs {task}: not its own"


def test_a_pipelines_plugins_are_its_own_or_the_shared_bases() -> None:
    shared = {name for file, doc in INCLUDED.items() if file.startswith("plugins/") for name in plugins_in(doc)}
    # plugins/ holds the installable bases only; a plugin inheriting from one belongs to a pipeline.
    assert [name for name in shared if "inherit_from" in PLUGINS[name] or "pip_url" not in PLUGINS[name]] == []
    for pipeline in REGISTERED.values():
        own_plugins = set(plugins_in(own_file(pipeline)))
        run = {plugin for tasks in jobs_in(own_file(pipeline)).values() for plugin in plugins_used_by(tasks)}
        assert run <= own_plugins | shared, pipeline.name
        assert own_plugins <= run, f"{pipeline.name}'s file defines plugins none of its jobs runs"
        for other in REGISTERED.values():
            if other is not pipeline:
                assert own_plugins & set(plugins_in(own_file(other))) == set()


def test_each_pipelines_dbt_build_selects_its_tag_and_writes_where_its_results_are_read() -> None:
    for pipeline in REGISTERED.values():
        builds = {
            task
            for tasks in jobs_in(own_file(pipeline)).values()
            for task in tasks
            if task.partition(":")[0] in ("dbt-postgres", f"dbt-postgres--{pipeline.name}")
        }
        assert bool(builds) == bool(pipeline.dbt_tag), pipeline.name
        for build in builds:
            args = shlex.split(command_of(build)["args"])
            assert args[0] == "build" and args[args.index("--select") + 1] == f"tag:{pipeline.dbt_tag}", build
            target_path = args[args.index("--target-path") + 1] if "--target-path" in args else "target"
            assert target_path == pipeline.dbt_target_path, build


# -- paths and names both Python and YAML spell out -----------------------------------------


def test_every_staging_path_of_a_plugin_is_its_steps_day_layout() -> None:
    layout = DayLayout(DAY, DATA_DIR)
    checked: set[str] = set()
    for pipeline in REGISTERED.values():
        for step in pipeline.steps:
            if not step.job:
                continue
            # A step with no day (PADAM's prepare) stages under the step's folder alone.
            staging = layout.staging_dir(step.name) if pipeline.runs_by_day else layout.staging_dir(step.name).parent
            for plugin in plugins_run_by(JOBS[step.job]):
                for key, value in settings_of(plugin).items():
                    if "NW_DATA_DIR" not in json.dumps(value):
                        continue
                    checked.add(plugin)
                    path = Path(str(expanded(value)).removeprefix("file://"))
                    if key == "output_dir":  # where the step's commit takes the files from
                        assert path == layout.staging_dir(step.name), (plugin, key)
                    elif key == "manifest_file":  # what the load's begin writes
                        assert path == layout.load_intent(step.name), (plugin, key)
                    elif key == "discovery_cache_dir":  # kept across days and steps, never the day's data
                        assert path.parent == DATA_DIR / ".cache", (plugin, key, path)
                    else:  # batch files: inside the area begin empties and commit removes
                        assert path.is_relative_to(staging), (plugin, key, path)
            if step.kind == EXTRACT:
                tap, target = plugins_run_by(JOBS[step.job])
                assert Path(str(expanded(settings_of(target)["output_dir"]))) == layout.staging_dir(step.name)
            if step.kind == LOAD:
                tap, target = plugins_run_by(JOBS[step.job])
                assert Path(str(expanded(settings_of(tap)["manifest_file"]))) == layout.load_intent(step.name)
                assert expanded(settings_of(target)["default_target_schema"]) == staging_schema(DAY)
    # Every plugin that names a path under the data directory was checked against a step.
    with_data_paths = {name for name in PLUGINS if "NW_DATA_DIR" in json.dumps(settings_of(name))}
    assert with_data_paths == checked


def test_the_landing_tables_and_backup_keys_are_the_ones_the_commands_read() -> None:
    assert settings_of("target-postgres-arrow--padam")["default_target_schema"] == PADAM_LANDING_SCHEMA
    [backup] = expanded(settings_of("tap-s3-raw")["objects"])
    keys = BackupKeys(DAY, RUN_ID)
    assert (backup["key"], backup["manifest_key"]) == (keys.object, keys.manifest)
    assert expanded(settings_of("target-s3-raw")["key"]) == keys.incoming
    assert f"{settings_of('target-postgres-arrow--ads')['default_target_schema']}.{backup['stream']}" == ADS_LANDING


# -- the CSV column contracts --------------------------------------------------------------


def csv_contracts() -> dict[str, dict]:
    """Every CSV file a pipeline's extract reads: stream -> {stream, path, key, columns}."""
    found = {}
    for pipeline in REGISTERED.values():
        for step in pipeline.extract_steps:
            for plugin in plugins_run_by(JOBS[step.job]):
                for entry in settings_of(plugin).get("files", []):
                    found[entry["stream"]] = entry
    return found


def staged_columns(stream: str) -> list[str]:
    """The columns the dbt model reading the stream's raw table selects, in order, without _day."""
    pattern = re.compile(
        r"select\s+(.*?)\s+from\s+\{\{\s*source\('\w+',\s*'" + stream + r"'\)\s*\}\}", re.DOTALL | re.IGNORECASE
    )
    models = [p for p in (PROJECT / "transform" / "models").rglob("*.sql") if f"'{stream}')" in p.read_text()]
    assert len(models) == 1, (stream, models)
    sql = re.sub(r"--[^\n]*", "", models[0].read_text())
    [select_list] = pattern.findall(sql)
    columns = [re.findall(r"\w+", item)[-1] for item in select_list.split(",")]
    return [column for column in columns if column != "_day"]


def test_each_csv_files_header_and_staging_model_follow_its_column_contract() -> None:
    contracts = csv_contracts()
    assert {"order_details", "people", "places"} <= set(contracts)
    for stream, contract in contracts.items():
        path = Path(str(expanded(contract["path"])))
        with path.open(encoding="utf-8-sig") as handle:
            assert handle.readline().strip().split(",") == list(contract["columns"]), stream
        assert staged_columns(stream) == list(contract["columns"]), stream


def test_the_copies_of_the_order_details_contract_are_the_pipelines() -> None:
    contract = csv_contracts()["order_details"]
    columns = list(contract["columns"].items())
    # The tests point the tap at another file with the same contract.
    [given] = json.loads(support.csv_env(Path("other.csv"))["TAP_TYPED_CSV_FILES"])
    assert given == {**contract, "path": "other.csv"}
    assert list(support.ORDER_DETAILS_COLUMNS.items()) == columns
    # The benchmark writes CSV files of the same shape (read without importing its dependencies).
    benchmark = ast.parse((PROJECT / "scripts" / "benchmark.py").read_text())
    [copy] = [
        ast.literal_eval(node.value)
        for node in benchmark.body
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["ORDER_DETAILS_COLUMNS"]
    ]
    assert list(copy.items()) == columns
    # The tap's standalone dev project (it must not read this project's files) and its fixtures.
    dev = plugins_in(yaml.safe_load((PROJECT / "extract" / "tap-typed-csv" / "meltano.yml").read_text()))
    dev_files = {entry["stream"]: entry for entry in dev["tap-typed-csv"]["config"]["files"]}
    for stream, pipeline_contract in csv_contracts().items():
        assert list(dev_files[stream]["columns"].items()) == list(pipeline_contract["columns"].items()), stream
        fixture = PROJECT / "extract" / "tap-typed-csv" / "tests" / "fixtures" / f"{stream}.csv"
        with fixture.open(encoding="utf-8-sig") as handle:
            assert handle.readline().strip().split(",") == list(pipeline_contract["columns"]), fixture


# -- walls ---------------------------------------------------------------------------------


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
