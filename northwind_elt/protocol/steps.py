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
import os
import shutil
import uuid
from pathlib import Path

import psycopg

from northwind_elt.core import ledger, settings
from northwind_elt.core.day import DayLayout, UnsafeName, name_of, path_component, pinned_day
from northwind_elt.core.errors import PipelineError
from northwind_elt.core.locks import AlreadyRunning, lease_held, lease_owner, release_lease, take_lease
from northwind_elt.core.manifests import (
    describe_parquet,
    read_begin,
    read_intent,
    write_begin,
    write_intent,
    write_partition,
    write_step,
)
from northwind_elt.protocol.definition import EXPORT, EXTRACT, LOAD, TRANSFORM, Pipeline, Step


class StepContext:
    """One step of one pipeline for the pinned day."""

    def __init__(self, pipeline: Pipeline, step_name: str) -> None:
        self.pipeline = pipeline
        self.step: Step = pipeline.step(step_name)
        self.day = pinned_day(self.step.name)
        # The plugins' folders come from the same variable (plugins/*.meltano.yml).
        settings.require([settings.DATA_DIR_ENV], f"{step_name}'s plugins write under it")
        self.layout = DayLayout.for_day(self.day)

    @property
    def name(self) -> str:
        return self.step.name

    def error(self, cause: str, fix: str | None = None, **kwargs) -> PipelineError:
        return PipelineError(self.name, self.day, cause, fix, **kwargs)

    # Leases: one attempt per step and day; one Meltano run per job across days.
    def _lease_names(self) -> list[tuple[str, str]]:
        return [
            (self._step_lease(self.name), f"{self.name} for {self.layout.iso}"),
            (f"meltano-{self.step.job}", f"meltano job {self.step.job} (for another day)"),
        ]

    def _step_lease(self, step: str) -> str:
        return f"{self.pipeline.name}-{step}-{self.layout.iso}"

    def take_leases(self) -> None:
        # A step and the steps it reads from or feeds must not run at once for the same
        # day (a load reading partitions that an extract is replacing).
        neighbours = [*self.step.needs, *(s.name for s in self.pipeline.steps if self.name in s.needs)]
        for other in neighbours:
            if holder := lease_held(self._step_lease(other)):
                raise self.error(
                    f"{other} for {self.layout.iso} is running (process {holder.pid}); "
                    f"{self.name} reads or feeds its output",
                    f"wait for {other} to finish",
                )
        for name, what in self._lease_names():
            try:
                take_lease(name, what)
            except AlreadyRunning as err:
                raise self.error(str(err), rerun_from=self.name) from None

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


# -- begin ---------------------------------------------------------------------------


def begin(pipeline: Pipeline, step_name: str) -> str:
    ctx = StepContext(pipeline, step_name)
    ctx.take_leases()
    started = ledger.now().isoformat()
    record = {"run_id": uuid.uuid4().hex, "started_at": started, "owner": lease_owner()}
    if ctx.step.kind == EXTRACT:
        ctx.clean_staging()
        record["expected_tables"] = sorted(_expected_tables(ctx))
    elif ctx.step.kind == LOAD:
        warehouse = ctx.pipeline.warehouse
        settings.require(settings.pg_variables(warehouse), f"{ctx.name} writes to {settings.describe_conn(warehouse)}")
        from northwind_elt.protocol.gate import verified_partitions
        from northwind_elt.protocol.swap import prepare_staging

        ctx.clean_staging()
        partitions = verified_partitions(pipeline, ctx.layout, ctx.name)
        files = {p.table: p.file for p in partitions}
        _with_database(ctx, warehouse, lambda: prepare_staging(settings.pg_conn(warehouse), ctx.name, ctx.day, files))
        write_intent(
            ctx.layout, ctx.name, record["run_id"], started, [(p.table, p.file, p.manifest) for p in partitions]
        )
    else:
        ctx.clean_staging()
    write_begin(ctx.layout, ctx.name, record)
    return f"{ctx.name} for {ctx.layout.iso}: begun (run {record['run_id']})"


def _with_database(ctx: StepContext, prefix: str, action):
    """Run `action`; a database that cannot be reached is named with its variables."""
    try:
        return action()
    except psycopg.OperationalError as err:
        raise ctx.error(
            ledger.redact(str(err).strip().splitlines()[0] if str(err).strip() else repr(err)),
            f"check {settings.describe_conn(prefix)}",
        ) from None


def _expected_tables(ctx: StepContext) -> set[str]:
    """The tables an extract must publish: declared for a file source, listed at the source otherwise."""
    if ctx.step.expected_tables:
        return set(ctx.step.expected_tables)
    settings.require(settings.pg_variables("SOURCE_PG"), "extract-postgres reads the source database")

    def list_tables() -> set[str]:
        with psycopg.connect(settings.pg_conn("SOURCE_PG").conninfo()) as conn:
            rows = conn.execute(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition"
                " AND has_table_privilege(c.oid, 'SELECT')"
            ).fetchall()
        return {row[0] for row in rows}

    tables = _with_database(ctx, "SOURCE_PG", list_tables)
    for table in sorted(tables):
        try:
            path_component(table)
            if "/" in table or "\\" in table:
                # tap-postgres puts stream names into its batch file names unencoded.
                raise UnsafeName(f"the name contains {'/' if '/' in table else chr(92)!r}, a path separator")
        except UnsafeName as err:
            raise ctx.error(
                f"source table {table!r} cannot be extracted: {err}",
                "rename the table, or revoke SELECT on it from the extraction role (SOURCE_PG_USER)",
            ) from None
    if not tables:
        raise ctx.error(
            f"{settings.describe_conn('SOURCE_PG')} has no table the extraction role can read",
            "check the source database and the role's grants (SOURCE_PG_* in .env)",
        )
    return tables


# -- commit --------------------------------------------------------------------------


def commit(pipeline: Pipeline, step_name: str) -> str:
    ctx = StepContext(pipeline, step_name)
    record = ctx.begin_record()
    kind = ctx.step.kind
    notes = None
    if kind == EXTRACT:
        rows = _commit_extract(ctx, record)
    elif kind == LOAD:
        rows = _commit_load(ctx, record)
    elif kind == TRANSFORM:
        from northwind_elt.protocol.dbt import check_run

        warnings = check_run(ctx.name, ctx.day, ctx.pipeline.dbt_target_path)
        notes = f"dbt warnings: {'; '.join(warnings)}" if warnings else None
        rows = None
    else:
        raise ctx.error(f"a {kind} step has no separate commit task")
    ctx.record_success(record["started_at"], rows, notes)
    shutil.rmtree(ctx.layout.staging_dir(ctx.name), ignore_errors=True)
    ctx.release_leases()
    return f"{ctx.name} for {ctx.layout.iso}: committed" + (f", {rows} rows" if rows is not None else "")


def _commit_extract(ctx: StepContext, record: dict) -> int:
    """Move the staged files into their partitions; the step manifest is written last."""
    dataset = ctx.step.dataset
    assert dataset is not None
    staging = ctx.layout.staging_dir(ctx.name)
    staged = {name_of(path.stem): path for path in staging.glob("*.parquet") if not path.name.startswith(".")}
    expected = set(record.get("expected_tables", []))
    missing = sorted(expected - set(staged))
    if not staged or missing:
        raise ctx.error(
            f"the extract wrote {len(staged)} table(s) to {staging}; missing: {missing or 'every table'}",
            "the tap stopped early or another run cleared its files; see the step's log",
        )
    # From here until the new step manifest is written, the step counts as not done.
    ctx.layout.step_manifest(ctx.name).unlink(missing_ok=True)
    tables = {}
    for table, source in sorted(staged.items()):
        described = describe_parquet(source)
        manifest_path = ctx.layout.partition_manifest(dataset, table)
        manifest_path.unlink(missing_ok=True)
        destination = ctx.layout.partition_file(dataset, table)
        destination.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, destination)  # atomic: same filesystem
        write_partition(ctx.layout, dataset, table, ctx.name, described)
        tables[table] = {"rows": described["rows"], "sha256": described["sha256"]}
    # Partitions of this day an earlier run published for tables that are gone.
    for table, manifest_path in ctx.layout.partitions_on_disk(dataset).items():
        if table not in tables:
            manifest_path.unlink()
            (manifest_path.parent / f"{path_component(table)}.parquet").unlink(missing_ok=True)
    write_step(ctx.layout, ctx.name, dataset, record["run_id"], tables, sorted(expected))
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
    return f"{ctx.name} for {ctx.layout.iso}: {rows} rows to {ctx.layout.output_dir()}"
