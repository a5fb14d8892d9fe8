"""The day protocol: `begin` and `commit` tasks around each step's work.

begin  takes the step's lease, pins the day, cleans what an earlier attempt of the same
       step and day left, runs the gate (load) and writes what the work needs (the load
       intent) and what commit must check (the begin record).
commit verifies the work, publishes it (rename, manifests last) or swaps the day in, and
       records the success in the ledger. It is the only writer of success there.

Plugins know none of this: they get directories and files through their config.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from northwind_elt.core import ledger, settings, state
from northwind_elt.core.day import DAY_ENV, DayLayout, name_of, path_component, pinned_day
from northwind_elt.core.errors import ConfigError, PipelineError
from northwind_elt.core.locks import AlreadyRunning, lease_held, lease_owner, release_lease, take_lease
from northwind_elt.core.manifests import read_begin, read_intent, write_begin, write_intent
from northwind_elt.core.text import plural
from northwind_elt.protocol.definition import EXPORT, EXTRACT, LOAD, TRANSFORM, Pipeline, Step
from northwind_elt.protocol.publish import Conflict, files_at_begin, publish, versions_at_begin


class StepContext:
    """One step of one pipeline for the pinned day."""

    def __init__(self, pipeline: Pipeline, step_name: str) -> None:
        self.pipeline = pipeline
        self.step: Step = pipeline.step(step_name)
        if os.environ.get(DAY_ENV) is None:
            raise _no_day(pipeline, self.step)
        self.day = pinned_day(self.step.name)
        # The plugins' folders come from the same variable (plugins/*.meltano.yml).
        settings.require([settings.DATA_DIR_ENV], f"{step_name}'s plugins write under it")
        self.layout = DayLayout.for_day(self.day)

    @property
    def name(self) -> str:
        return self.step.name

    def error(self, cause: str, fix: str | None = None, **kwargs) -> PipelineError:
        return PipelineError(self.name, self.day, cause, fix, **kwargs)

    # Leases: one attempt per step and day; one Meltano run per job across days on a working
    # copy; one build of a pipeline's dbt models at a time on every machine (dbt rebuilds the
    # shared staging views and candidate tables whatever the day).
    def _lease_names(self) -> list[tuple[str, str]]:
        names = [
            (self._step_lease(self.name), f"{self.name} for {self.layout.iso}"),
            (f"meltano-{self.step.job}", f"meltano job {self.step.job} (for another day)"),
        ]
        if self.step.kind == TRANSFORM:
            names.append((f"{self.pipeline.name}-dbt-models", f"the {self.pipeline.name} dbt models' build"))
        return names

    def _step_lease(self, step: str) -> str:
        return f"{self.pipeline.name}-{step}-{self.layout.iso}"

    def take_leases(self) -> None:
        # A step and the steps it reads from or feeds must not run at once for the same
        # day (a load reading partitions that an extract is replacing). Its own lease first,
        # then the neighbours': of two neighbours starting at once, one sees the other.
        for name, what in self._lease_names():
            try:
                died = take_lease(name, what)
            except AlreadyRunning as err:
                self.release_leases()  # those taken already: a retry must not wait for them to expire
                raise self.error(str(err), rerun_from=self.name) from None
            if died and name == self._step_lease(self.name):
                # Another machine's attempt that never committed: its process or machine died (a
                # SIGKILL records nothing), so the ledger learns of it here, for `nw status`.
                ledger.record(
                    self.pipeline.name,
                    self.day,
                    self.name,
                    "interrupted",
                    error=f"the attempt on {died.host} (process {died.pid}) stopped without committing: its lease "
                    f"expired (the machine or the process died); taken over on {state.host()}",
                )
        neighbours = [*self.step.needs, *(s.name for s in self.pipeline.steps if self.name in s.needs)]
        for other in neighbours:
            if holder := lease_held(self._step_lease(other)):
                self.release_leases()
                on = f" on {holder.host}" if holder.host else ""
                raise self.error(
                    f"{other} for {self.layout.iso} is running (process {holder.pid}{on}); "
                    f"{self.name} reads or feeds its output",
                    f"wait for {other} to finish",
                )

    def release_leases(self) -> None:
        for name, _ in self._lease_names():
            release_lease(name)

    def begin_record(self) -> dict:
        record = read_begin(self.layout, self.name)
        if record is None or record.get("owner") != lease_owner():
            raise self.error(
                "no begin record of this run: the step's begin task did not run in this `meltano run`",
                f"run the whole job (`meltano run {self.step.job}`), not its tasks one by one",
            )
        return record

    def clean_staging(self) -> Path:
        staging = self.layout.staging_dir(self.name)
        shutil.rmtree(staging, ignore_errors=True)
        try:
            staging.mkdir(parents=True)
        except OSError as err:
            raise self.error(
                f"cannot create {staging}: {err.strerror}",
                f"make the data directory writable or point {settings.DATA_DIR_ENV} in .env elsewhere",
            ) from None
        return staging

    def record_success(self, started_at: str, rows: int | None, notes: str | None = None) -> None:
        ledger.record(
            self.pipeline.name,
            self.day,
            self.name,
            "success",
            started_at=dt.datetime.fromisoformat(started_at),
            rows=rows,
            notes=notes,
        )


def _no_day(pipeline: Pipeline, step: Step) -> ConfigError:
    """The refusal of a task started without a pinned day, naming the job the user ran (`meltano run
    daily` runs extract-postgres first: the job to run again is daily), else the step's own job."""
    from northwind_elt.protocol.meltano import invoking_meltano_run

    jobs = {s.job for s in pipeline.steps} | {pipeline.all_steps_job}
    job = next((name for name in invoking_meltano_run() if name in jobs), step.job)
    return ConfigError(
        f"{step.name} started without a day: {DAY_ENV} is not set, and a task never decides what today is",
        f"run the job through the entry point (`nw run --date YYYY-MM-DD {job}`, or `nw run {job}` for today), "
        f"or set the day yourself: {DAY_ENV}=YYYY-MM-DD meltano run {job}",
        step.name,
    )


# -- begin ---------------------------------------------------------------------------


def begin(pipeline: Pipeline, step_name: str) -> str:
    ctx = StepContext(pipeline, step_name)
    ctx.take_leases()
    started = ledger.now().isoformat()
    record = {"run_id": uuid.uuid4().hex, "started_at": started, "owner": lease_owner()}
    warnings: list[str] = []
    if ctx.step.kind == EXTRACT:
        ctx.clean_staging()
        record.update(_expected_tables(ctx, warnings))
        assert ctx.step.dataset is not None
        record["lake_versions"] = versions_at_begin(ctx.layout, ctx.step.dataset, ctx.name)
        record["lake_files"] = files_at_begin(ctx.layout, ctx.step.dataset, ctx.name)
    elif ctx.step.kind == LOAD:
        warehouse = ctx.pipeline.warehouse
        settings.require(settings.pg_variables(warehouse), f"{ctx.name} writes to {settings.describe_conn(warehouse)}")
        from northwind_elt.protocol.gate import verified_partitions
        from northwind_elt.protocol.swap import prepare_staging

        ctx.clean_staging()
        partitions = verified_partitions(pipeline, ctx.layout, ctx.name)
        where = ctx.layout.store.where
        files = {p.table: where(p.file) for p in partitions}
        _with_database(ctx, warehouse, lambda: prepare_staging(settings.pg_conn(warehouse), ctx.name, ctx.day, files))
        write_intent(
            ctx.layout, ctx.name, record["run_id"], started, [(p.table, where(p.file), p.manifest) for p in partitions]
        )
    else:
        ctx.clean_staging()
    write_begin(ctx.layout, ctx.name, record)
    return "\n".join([f"{ctx.name} for {ctx.layout.iso}: begun (run {record['run_id']})", *warnings])


def _with_database(ctx: StepContext, prefix: str, action):
    """Run `action`; a database that cannot be reached is named with its variables."""
    import psycopg  # here: steps that use no database never load it

    try:
        return action()
    except psycopg.OperationalError as err:
        raise ctx.error(
            ledger.redact(str(err).strip().splitlines()[0] if str(err).strip() else repr(err)),
            f"check {settings.describe_conn(prefix)}",
        ) from None


# -- the tables of the source ------------------------------------------------------------
#
# Which relations of the source an extract delivers is decided twice, by one rule: by the
# tap's discovery (extract/tap-postgres-arrow/tap_postgres_arrow/tables.py, `choose_tables`,
# which cannot import this package) and here, for what `commit` must find. Ordinary and
# partitioned tables, not partitions (their rows come through their parent); views,
# materialized views and foreign tables only when named in SOURCE_PG_INCLUDE_VIEWS; nothing
# named in SOURCE_PG_EXCLUDE_TABLES; nothing the extraction role may not SELECT from (skipped
# with a warning). tests/unit/test_source_tables.py compares the two on a catalog, and
# tests/e2e/northwind/test_hostile_sources.py on a real source; `commit` refuses a table the
# tap delivered and this rule did not list, so the two cannot drift apart unnoticed.

EXCLUDE_ENV = "SOURCE_PG_EXCLUDE_TABLES"
VIEWS_ENV = "SOURCE_PG_INCLUDE_VIEWS"
# The tap's failed_tables_file (plugins/extractors.meltano.yml), in the step's staging area.
FAILED_TABLES_FILE = "_failed_tables.json"
_TABLE_KINDS, _VIEW_KINDS = {"r", "p"}, {"v", "m", "f"}
_RELATIONS_SQL = (
    "SELECT c.relname, c.relkind::text, c.relispartition, has_table_privilege(c.oid, 'SELECT')"
    " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'f')"
)
# Columns the load adds to every row of raw: a source table that has one cannot be loaded.
_RESERVED_COLUMNS_SQL = (
    "SELECT c.relname, a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
    " JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname = 'public' AND a.attnum > 0 AND NOT a.attisdropped AND a.attname = ANY(%s)"
    " ORDER BY c.relname, a.attnum"
)


def parse_names(value: str | None) -> list[str]:
    """A list of names from an environment variable: `t1,t2` (blanks around each name dropped) or,
    for names holding a comma, a JSON array. The tap reads its settings the same way."""
    text = (value or "").strip()
    if not text:
        return []
    if text.startswith("["):
        names = json.loads(text)
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise ValueError(f"expected a JSON array of names, got {text!r}")
        return names
    return [name.strip() for name in text.split(",") if name.strip()]


def _plain(name: str) -> bool:
    """A name that a comma-separated .env value carries as it is."""
    return bool(name) and name == name.strip() and not name.startswith("[") and not set(name) & set(",'\"#$\\`\n\r")


def env_line(variable: str, names: list[str]) -> str:
    """The .env line that gives `variable` exactly `names`: comma-separated when every name allows
    it, else a JSON array in single quotes (escaped as python-dotenv, which Meltano and nw read
    .env with, reads them back)."""
    if all(_plain(name) for name in names):
        return f"{variable}={','.join(names)}"
    text = json.dumps(names, ensure_ascii=False).replace("\\", "\\\\").replace("'", "\\'")
    return f"{variable}='{text}'"


@dataclass
class SourceTables:
    """The source's relations by what the extract does with them (the rule above)."""

    extracted: list[str] = field(default_factory=list)
    partitions: list[str] = field(default_factory=list)
    views_not_included: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)


def choose_source_tables(
    relations: list[tuple[str, str, bool, bool]], include_views: list[str], exclude: list[str]
) -> SourceTables:
    """The rule on (name, relkind, is a partition, readable) rows, in their order."""
    chosen = SourceTables()
    for name, kind, is_partition, readable in relations:
        if name in exclude:
            chosen.excluded.append(name)
        elif kind in _TABLE_KINDS and is_partition:
            chosen.partitions.append(name)
        elif kind in _VIEW_KINDS and name not in include_views:
            chosen.views_not_included.append(name)
        elif kind not in _TABLE_KINDS | _VIEW_KINDS:
            continue
        elif not readable:
            chosen.unreadable.append(name)
        else:
            chosen.extracted.append(name)
    return chosen


def _names_setting(ctx: StepContext, variable: str) -> list[str]:
    try:
        return parse_names(os.environ.get(variable))
    except ValueError as err:
        raise ctx.error(
            f"{variable} is not a list of table names: {err}",
            f'set it in {settings.project_root() / ".env"} as t1,t2 or as a JSON array (["a,b", "c"])',
        ) from None


def _expected_tables(ctx: StepContext, warnings: list[str]) -> dict:
    """What an extract must publish (`expected_tables`): declared for a file source; for the source
    database, its tables by the rule above, with what was left out and why, and the tables that
    cannot be extracted whatever their values (`refused`: a path separator in the name, a column
    the load adds), which `commit` reports with the failures of the tap."""
    if ctx.step.expected_tables:
        return {"expected_tables": sorted(ctx.step.expected_tables)}
    settings.require(settings.pg_variables("SOURCE_PG"), "extract-postgres reads the source database")
    exclude, views = _names_setting(ctx, EXCLUDE_ENV), _names_setting(ctx, VIEWS_ENV)
    from northwind_elt.protocol.swap import CONSTANT_COLUMNS

    def read_catalog() -> tuple[list, list]:
        import psycopg

        with psycopg.connect(settings.pg_conn("SOURCE_PG").conninfo()) as conn:
            relations = conn.execute(_RELATIONS_SQL).fetchall()
            reserved = conn.execute(_RESERVED_COLUMNS_SQL, [list(CONSTANT_COLUMNS)]).fetchall()
        return sorted(relations), reserved

    relations, reserved = _with_database(ctx, "SOURCE_PG", read_catalog)
    chosen = choose_source_tables(relations, views, exclude)
    tables = chosen.extracted
    if not tables:
        raise ctx.error(
            f"{settings.describe_conn('SOURCE_PG')} has no table the extraction role can read"
            + (f" and {EXCLUDE_ENV} does not exclude" if exclude else ""),
            "check the source database and the role's grants (SOURCE_PG_* in .env)",
        )
    refused: dict[str, list[str]] = {}
    for table in tables:
        if separators := [c for c in ("/", "\\") if c in table]:
            # Kept from the days the stock tap put stream names into batch file names unencoded.
            refused.setdefault(table, []).append(f"the name contains {separators[0]!r}, a path separator")
    for table, column in reserved:
        if table in tables:
            refused.setdefault(table, []).append(
                f"column {column}: the load adds a column of that name to every row of raw"
            )
    role = settings.pg_conn("SOURCE_PG").user
    if chosen.unreadable:
        warnings.append(
            f"WARNING: {ctx.name} for {ctx.layout.iso}: skipping {plural(len(chosen.unreadable), 'table')} the "
            f"extraction role {role} may not read: {', '.join(chosen.unreadable)} (GRANT SELECT to extract "
            f"{_them(chosen.unreadable)}, or list {_them(chosen.unreadable)} in {EXCLUDE_ENV})"
        )
    known = {row[0] for row in relations}
    return {
        "expected_tables": sorted(tables),
        "excluded_tables": exclude,
        "excluded_not_found": [name for name in exclude if name not in known],
        "unreadable_tables": chosen.unreadable,
        "views": [name for name in tables if name in views],
        "refused": refused,
    }


def _exclusion_notes(record: dict) -> str | None:
    """What `nw status` shows of a day extracted without some of the source's tables."""
    notes = []
    if excluded := record.get("excluded_tables"):
        missing = record.get("excluded_not_found") or []
        notes.append(
            f"excluded: {', '.join(excluded)} ({EXCLUDE_ENV})"
            + (f"; not in the source: {', '.join(missing)}" if missing else "")
        )
    if unreadable := record.get("unreadable_tables"):
        notes.append(f"skipped, the extraction role may not read them: {', '.join(unreadable)}")
    return "; ".join(notes) or None


# -- commit --------------------------------------------------------------------------


def commit(pipeline: Pipeline, step_name: str) -> str:
    ctx = StepContext(pipeline, step_name)
    record = ctx.begin_record()
    kind = ctx.step.kind
    notes = None
    if kind == EXTRACT:
        rows = _commit_extract(ctx, record)
        notes = _exclusion_notes(record)
    elif kind == LOAD:
        rows = _commit_load(ctx, record)
    elif kind == TRANSFORM:
        from northwind_elt.protocol.dbt import check_run
        from northwind_elt.protocol.outputs import publish_manifest

        began = dt.datetime.fromisoformat(record["started_at"])
        warnings = check_run(ctx.name, ctx.day, ctx.pipeline.dbt_target_path, since=began)
        publish_manifest(ctx.pipeline.dbt_target_path, ctx.layout.store, ctx.layout.dbt_manifest(ctx.name))
        notes = f"dbt warnings: {'; '.join(warnings)}" if warnings else None
        rows = None
    else:
        raise ctx.error(f"a {kind} step has no separate commit task")
    ctx.record_success(record["started_at"], rows, notes)
    shutil.rmtree(ctx.layout.staging_dir(ctx.name), ignore_errors=True)
    ctx.release_leases()
    counted = f", {plural(rows, 'row')}" if rows is not None else ""
    return f"{ctx.name} for {ctx.layout.iso}: committed{counted}"


def _them(names: list[str]) -> str:
    return "it" if len(names) == 1 else "them"


def _staged_tables(ctx: StepContext, staging: Path, expected: set[str]) -> tuple[dict[str, Path], list[str]]:
    """The staged file of each table (target-parquet-files names it as `path_component` does) and
    the names of files no expected table has. A file source's step publishes those too (its
    names are plain); the source database's may not."""
    by_component = {path_component(table): table for table in expected}
    staged, unexpected = {}, []
    for path in staging.glob("*.parquet"):
        if path.name.startswith("."):
            continue
        table = by_component.get(path.stem)
        if table is None and not ctx.step.expected_tables:
            unexpected.append(name_of(path.stem))
            continue
        staged[table or name_of(path.stem)] = path
    return staged, sorted(unexpected)


def _failing_tables(record: dict, staging: Path) -> dict[str, list[str]]:
    """Every table that cannot be extracted exactly, with each of its problems: what `begin` found
    in the catalog, and what the tap found in the values (its failed_tables_file)."""
    failing = {table: list(problems) for table, problems in (record.get("refused") or {}).items()}
    report = staging / FAILED_TABLES_FILE
    if report.exists():
        for table in json.loads(report.read_text()).get("tables", []):
            problems = [f"column {c['column']} {c['pg_type']}: {c['problem']}" for c in table.get("columns", [])]
            failing.setdefault(table.get("name") or table["table"], []).extend(problems or [table["detail"]])
    return failing


def _refuse_failing(ctx: StepContext, record: dict, failing: dict[str, list[str]]) -> PipelineError:
    """One error naming every failing table and each of its problems, and the one setting that
    leaves them out (the line to put in .env: the tables already excluded and these)."""
    tables = sorted(failing)
    if len(tables) == 1:
        cause = f"source table {tables[0]!r} cannot be extracted: {'; '.join(failing[tables[0]])}"
    else:
        listed = ", ".join(f"{table!r} ({'; '.join(failing[table])})" for table in tables)
        cause = f"{len(tables)} source tables cannot be extracted: {listed}"
    current = list(record.get("excluded_tables") or [])
    line = env_line(EXCLUDE_ENV, current + [t for t in tables if t not in current])
    in_place = f" (in place of {env_line(EXCLUDE_ENV, current)})" if current else ""
    problems = [p for table in tables for p in failing[table]]
    it = "it" if len(tables) == 1 else "them"
    ways = []
    if any("path separator" in p for p in problems):
        ways.append(
            f"rename the table, or revoke SELECT on it from the extraction role ({settings.pg_conn('SOURCE_PG').user})"
        )
    if any(p.startswith("column ") for p in problems):
        ways.append(
            "fix the values or columns named at the source (nothing is changed or dropped to make a table pass)"
        )
    env_file = settings.project_root() / ".env"
    fix = ", or ".join([*ways, f"leave {it} out of the pipeline with this line in {env_file}{in_place}: {line}"])
    return ctx.error(cause, fix)


def _commit_extract(ctx: StepContext, record: dict) -> int:
    """Move the staged files into their partitions; the step manifest is written last."""
    dataset = ctx.step.dataset
    assert dataset is not None
    staging = ctx.layout.staging_dir(ctx.name)
    expected = set(record.get("expected_tables", []))
    staged, unexpected = _staged_tables(ctx, staging, expected)
    if failing := _failing_tables(record, staging):
        for table in failing:  # nothing of a refused table stays, even in the private staging area
            if table in staged:
                staged[table].unlink(missing_ok=True)
        raise _refuse_failing(ctx, record, failing)
    if unexpected:
        raise ctx.error(
            f"the tap extracted {plural(len(unexpected), 'table')} {unexpected} that nw begin did not list: "
            "the rule of extract/tap-postgres-arrow/tap_postgres_arrow/tables.py and northwind_elt/protocol/steps.py "
            "disagree",
            f"report it; meanwhile, leave {_them(unexpected)} out with "
            + env_line(EXCLUDE_ENV, [*(record.get("excluded_tables") or []), *unexpected]),
        )
    missing = sorted(expected - set(staged))
    if not staged or missing:
        raise ctx.error(
            f"the extract wrote {plural(len(staged), 'table')} to {staging}; missing: {missing or 'every table'}",
            "the tap stopped early or another run cleared its files; see the step's log",
        )
    left_out = {
        key: record[key] for key in ("excluded_tables", "unreadable_tables", "views") if record.get(key) is not None
    }
    try:
        tables = publish(
            ctx.layout,
            dataset,
            ctx.name,
            record["run_id"],
            staged,
            record.get("lake_versions") or {},
            sorted(expected),
            left_out,
            record.get("lake_files") or [],
        )
    except Conflict as conflict:
        raise ctx.error(
            f"another attempt committed {conflict.what} of {ctx.name} for {ctx.layout.iso} after this one began "
            f"({conflict.detail}); this attempt's files no manifest names were removed, and the day is read as that "
            "attempt published it",
            "nothing, if that attempt's output is what you want; otherwise extract the day again",
            rerun_from=ctx.name,
        ) from None
    return sum(t["rows"] for t in tables.values())


def _commit_load(ctx: StepContext, record: dict) -> int:
    from northwind_elt.protocol.swap import swap_day

    intent = read_intent(ctx.layout, ctx.name)
    if intent is None or intent.get("load_id") != record["run_id"]:
        raise ctx.error(f"the load intent {ctx.layout.load_intent(ctx.name)} is missing or belongs to another run")
    warehouse = ctx.pipeline.warehouse
    return _with_database(ctx, warehouse, lambda: swap_day(settings.pg_conn(warehouse), ctx.name, ctx.day, intent))


# -- steps done in one task ------------------------------------------------------------


def _exporter(pipeline: Pipeline):
    """The pipeline's export function, named in its definition ("module:function")."""
    if not pipeline.exporter:
        raise KeyError(f"pipeline {pipeline.name} has no exporter")
    module, _, function = pipeline.exporter.partition(":")
    return getattr(importlib.import_module(module), function)


def _require_audited(ctx: StepContext) -> None:
    """Export only a day whose every upstream step succeeded, each after the steps it reads."""
    entries = ledger.latest(ctx.pipeline.name, ctx.day)
    extracts = " or ".join(step.name for step in ctx.pipeline.extract_steps)
    pending = list(ctx.step.needs)
    while pending:
        step = ctx.pipeline.step(pending.pop())
        pending.extend(step.needs)
        entry = entries.get(step.name)
        if not entry or entry["status"] != "success":
            if entry and step.kind == TRANSFORM:
                reason = (entry["error"] or "").strip().splitlines()[0] if entry["error"] else ""
                raise ctx.error(
                    f"refused: {step.name} for {ctx.layout.iso} is {entry['status']}"
                    + (f" ({reason})" if reason else ""),
                    "fix the input the failed tests name (their rows are in the audit tables named) and extract it "
                    f"again ({extracts})",
                    rerun_from=ctx.pipeline.step_names[0],
                )
            raise ctx.error(
                f"refused: {step.name} for {ctx.layout.iso} is {entry['status'] if entry else 'not run'}",
                rerun_from=step.name,
            )
        upstream = [entries.get(name) for name in step.needs]
        if any(u and u["status"] == "success" and u["finished_at"] > entry["finished_at"] for u in upstream):
            raise ctx.error(
                f"refused: {step.name} for {ctx.layout.iso} is older than the day's latest {', '.join(step.needs)}",
                rerun_from=step.name,
            )


def export(pipeline: Pipeline, step_name: str) -> str:
    ctx = StepContext(pipeline, step_name)
    assert ctx.step.kind == EXPORT
    ctx.take_leases()
    started = ledger.now().isoformat()
    try:
        _require_audited(ctx)
        warehouse = ctx.pipeline.warehouse
        settings.require(settings.pg_variables(warehouse), f"the export reads {settings.describe_conn(warehouse)}")
        target = settings.pg_conn(warehouse)
        write = _exporter(ctx.pipeline)
        rows = _with_database(ctx, warehouse, lambda: write(ctx.pipeline, ctx.name, ctx.layout, target))
        ctx.record_success(started, rows)
    finally:
        ctx.release_leases()
    written = ctx.layout.store.where(ctx.layout.output_dir())
    return f"{ctx.name} for {ctx.layout.iso}: {plural(rows, 'row')} to {written}"
