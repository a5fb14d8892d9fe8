"""`nw status`: every pipeline's recent units, or one day in detail, from the ledger and the locks.

Everything comes from the registry: a pipeline's unit (a day, a month, or a run and its
day), its steps (the table's columns) and its rerun commands (`Pipeline.rerun`). The entry
point may add what it knows besides the ledger (`Extra`: PADAM's reconciliation, ads'
table counts).

The ledger holds each step's attempts; the leases say which steps run right now. A unit is
`running` while a step holds its lease, `failed at S` when a step's latest attempt failed,
`stale` when a step finished after a step that reads its output (the downstream step still
holds the older data), `incomplete` when a step on the pipeline's schedule has not run for
it, `done` otherwise. A cell shows a step's latest outcome and how many attempts failed in a
row just before it: `success (2 failed before)`.

A step that runs for every unit at once (PADAM's incremental prepare: its command takes no
unit) shows its latest attempt in every unit's row. `nw status --date D` shows the day D of
a day pipeline, the month holding D of a month pipeline, and the runs of D (and D's per-day
steps) of a run pipeline.
"""

from __future__ import annotations

import datetime as dt
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from northwind_elt.core import ledger, locks, text
from northwind_elt.core.day import DayLayout, configured_lake
from northwind_elt.core.errors import PipelineError
from northwind_elt.pipelines import REGISTRY, pipeline_of_step
from northwind_elt.protocol.definition import EXTRACT, MONTH, RUN, Pipeline
from northwind_elt.protocol.units import needed_steps, unit_of

FAILED = ledger.FAILED
UNIT_COLUMNS = {RUN: ("day", "run"), MONTH: ("month",)}  # any other unit: ("day",)


@dataclass(frozen=True)
class Check:
    """One unit's result of a check the ledger cannot make (PADAM's reconciliation)."""

    value: str  # shown in the check's column
    problem: str | None = None  # the unit's state when the check finds it wrong
    fix: str | None = None  # the command that puts it right
    detail: str = ""  # shown by the detailed view


@dataclass
class Extra:
    """What the entry point knows of a pipeline besides the ledger: a check per unit (a column
    named `column`) and lines shown under the pipeline's table."""

    column: str = ""
    checks: dict[str, Check] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    lost: bool = False  # data the pipeline recorded is gone (its notes say which): status exits 1


# One format for every view (core/text.py): thousands separators, seconds with one decimal.
plural = text.plural
rows_text = text.number


def seconds_text(entry: dict[str, Any]) -> str:
    """The step's wall seconds (`nw run`'s, start-up included) or else its own duration."""
    return text.seconds(entry.get("wall_s") if entry.get("wall_s") is not None else entry.get("duration_s"))


def outcome(entry: dict[str, Any]) -> str:
    """The latest outcome and the failures just before it: never an attempt count."""
    failed = entry.get("failed_before") or 0
    return entry["status"] + (f" ({failed:,} failed before)" if failed else "")


@dataclass
class UnitState:
    pipeline: Pipeline
    unit: str
    entries: dict[str, dict[str, Any]]
    running: dict[str, locks.Holder] = field(default_factory=dict)
    check: Check | None = None

    @classmethod
    def read(
        cls, pipeline: Pipeline | str, unit: str, entries: dict[str, dict[str, Any]], check: Check | None = None
    ) -> UnitState:
        definition = REGISTRY[pipeline] if isinstance(pipeline, str) else pipeline
        running = {}
        for step in definition.step_names:
            # A step over every unit holds its lease under the pipeline's name.
            held_for = unit if definition.runs_for_one_unit(step) else definition.name
            if holder := locks.running(definition.name, step, held_for):
                running[step] = holder
        return cls(definition, unit, entries, running, check)

    @property
    def steps(self) -> tuple[str, ...]:
        return self.pipeline.step_names

    def first_not_done(self) -> str:
        return next(s for s in self.steps if (self.entries.get(s) or {}).get("status") != "success")

    def stale(self) -> tuple[str, str] | None:
        """(upstream, downstream): the first step that succeeded after a step reading its output.

        A step that runs for every unit at once is left out as the upstream: its newer run
        does not say it changed this unit."""
        for step in self.pipeline.steps:
            down = self.entries.get(step.name)
            if not down or down["status"] != "success":
                continue
            for upstream in step.needs:
                up = self.entries.get(upstream)
                if not self.pipeline.runs_for_one_unit(upstream):
                    continue
                if up and up["status"] == "success" and up["finished_at"] > down["finished_at"]:
                    return upstream, step.name
        return None

    def verdict(self) -> tuple[str, str | None]:
        """(state, what to do): running, failed at S, stale, incomplete, the check's problem, done."""
        rerun = self.pipeline.rerun
        if self.running:
            step, holder = next(iter(self.running.items()))
            return f"running {step}", f"wait: {step} runs in process {holder.pid}"
        if not self.entries and self.check:  # known to the check only (before the ledger knew it)
            return self.check.problem or f"{self.check.value}, nothing in the ledger", self.check.fix
        for step in self.steps:
            entry = self.entries.get(step)
            if entry and entry["status"] in FAILED:
                # A day pipeline reruns from its first step not done (a load refused for want of
                # an extract reruns from that extract); the others rerun the failed command.
                first = self.first_not_done() if self.pipeline.runs_by_day else step
                return f"{entry['status']} at {step}", rerun(first, self.unit)
        if stale := self.stale():
            upstream, downstream = stale
            return f"stale: {upstream} newer than {downstream}", rerun(downstream, self.unit)
        missing = [s for s in needed_steps(self.pipeline) if s not in self.entries]
        if missing:
            return "incomplete", rerun(missing[0], self.unit)
        if self.check and self.check.problem:
            return self.check.problem, self.check.fix
        return "done", None

    def cell(self, step: str) -> str:
        if holder := self.running.get(step):
            return f"running\npid {holder.pid}"
        entry = self.entries.get(step)
        if entry is None:
            return "-"
        rows = entry.get("rows")
        seconds = seconds_text(entry)
        details = " ".join(filter(None, (rows is not None and text.plural(rows, "row"), seconds and f"{seconds} s")))
        return f"{outcome(entry)}\n{details}" if details else outcome(entry)

    def unit_cells(self) -> list[str]:
        if self.pipeline.unit == RUN:
            day, _, run = self.unit.partition("/")
            return [day, run]
        return [self.unit]


def _states(pipeline: Pipeline, count: int | None, extra: Extra | None, within: str | None = None) -> list[UnitState]:
    """The pipeline's `count` most recent units (of `within`, if given), newest first."""
    own = [s for s in pipeline.step_names if pipeline.runs_for_one_unit(s)]
    shared = ledger.latest_of_steps(pipeline.name, [s for s in pipeline.step_names if s not in own])
    units = ledger.latest_by_unit(pipeline.name, pipeline.unit, count, steps=own, within=within)
    checks = extra.checks if extra else {}
    keys = list(units)
    for key in checks:
        if key not in units and (within is None or key == within):
            keys.append(key)
    # Newest first, a run with its day: the ledger's order, the check's units slotted in by key.
    position = {key: n for n, key in enumerate(units)}
    keys.sort(key=lambda k: (k[:10], -position.get(k, len(units))), reverse=True)
    keys = keys[:count] if count is not None else keys
    return [
        UnitState.read(pipeline, key, {**units.get(key, {}), **shared} if key in units else {}, checks.get(key))
        for key in keys
    ]


def console() -> Console:
    # A pipe or a file gets plain text, wide enough not to fold the table.
    plain = not os.isatty(1)
    return Console(highlight=False, no_color=plain, width=160 if plain else None, soft_wrap=False)


def _title(pipeline: Pipeline, states: list[UnitState]) -> str:
    kinds = Counter(ledger.kind_of(state.unit) for state in states)
    counts = " and ".join(plural(kinds[kind], kind) for kind in (ledger.RUN, ledger.DAY, ledger.MONTH) if kinds[kind])
    return f"{pipeline.name}: last {counts}"


def overview(units: int, extras: dict[str, Extra] | None = None) -> int:
    """A table per pipeline: its `units` most recent units by steps, and what to do about each."""
    out = console()
    extras = extras or {}
    in_ledger = ledger.pipelines()
    shown = [p for p in REGISTRY.values() if p.name in in_ledger or p.name in extras]
    if not in_ledger and not any(e.checks for e in extras.values()):
        out.print(f"Nothing has run yet (ledger {ledger.where()}). Start with: make run")
    todo: dict[tuple[str, str, str], list[str]] = {}
    for pipeline in shown:
        extra = extras.get(pipeline.name)
        states = _states(pipeline, units, extra)
        if states:
            _print_table(out, pipeline, states, extra)
            for line in _left_out(pipeline, states):
                print(line)
        elif extra and extra.notes:
            print(f"{pipeline.name}: nothing in the ledger yet")
        for line in extra.notes if extra else ():
            print(line.rstrip())
        for state in states:
            verdict, action = state.verdict()
            if action:  # one line for the units with the same state and the same command
                todo.setdefault((pipeline.name, verdict, action), []).append(state.unit)
    unknown = sorted(set(in_ledger) - set(REGISTRY))
    if unknown:
        out.print(f"The ledger also holds {', '.join(unknown)}: not registered, not shown.", markup=False)
    lost = _lake_lines(out, shown)
    if todo:
        out.print("To do:")
        for (name, verdict, action), keys in todo.items():
            out.print(f"  {name} {', '.join(keys)}: {verdict} -> {action}", markup=False)
    if shown:
        out.print(
            "In detail: nw status --date DAY (a month pipeline: DAY's month; a run pipeline: DAY's runs);"
            " a step's whole error: nw status --date DAY --error STEP",
            markup=False,
        )
    return 1 if lost or any(extra.lost for extra in extras.values()) else 0


def _lake_lines(out: Console, shown: list[Pipeline]) -> bool:
    """Where the lake is, and every committed partition of the latest days it no longer holds intact."""
    from northwind_elt.protocol.integrity import lost_partitions

    try:
        lake = configured_lake()
    except PipelineError as err:
        print(f"Lake: {err.cause}")
        return True
    endpoint = lake.storage_options.get("endpoint_url")
    kind = f"S3 at {endpoint}" if lake.remote and endpoint else "S3" if lake.remote else "local disk"
    print(f"Lake: {lake.url} ({kind})")
    lost = lost_partitions(shown)
    for line in lost:
        print(line)
    return bool(lost)


def _print_table(out: Console, pipeline: Pipeline, states: list[UnitState], extra: Extra | None) -> None:
    table = Table(title=_title(pipeline, states), title_justify="left", box=box.SIMPLE_HEAD)
    for name in UNIT_COLUMNS.get(pipeline.unit, ("day",)):
        table.add_column(name, no_wrap=True)
    for step in pipeline.step_names:
        table.add_column(step, no_wrap=True)
    checked = extra is not None and bool(extra.checks)
    if checked:
        table.add_column(extra.column, no_wrap=True)
    table.add_column("state")
    for state in states:
        check = [state.check.value if state.check else "-"] if checked else []
        table.add_row(*state.unit_cells(), *(state.cell(s) for s in pipeline.step_names), *check, state.verdict()[0])
    with out.capture() as captured:
        out.print(table)
    print("\n".join(line.rstrip() for line in captured.get().splitlines()))  # no padding in files


def _left_out(pipeline: Pipeline, states: list[UnitState]) -> list[str]:
    """The tables each unit's extracts left out (excluded by the user, not readable by the role),
    as their successful attempt noted them: a day complete for the tables it declares, never
    silently short."""
    lines = []
    for state in states:
        for step in pipeline.steps:
            entry = state.entries.get(step.name)
            if step.kind == EXTRACT and entry and entry["status"] == "success" and entry.get("notes"):
                lines.append(f"  {state.unit} {step.name}: {entry['notes']}")
    return lines


def day_detail(day: dt.date, extras: dict[str, Extra] | None = None) -> list[str]:
    """Each pipeline's steps of the day (the month of the day, the runs of the day): status,
    rows, wall seconds, errors, what to rerun. Pipelines that never ran are left out, but for
    the day pipelines (every step "not run")."""
    extras = extras or {}
    layout = DayLayout.for_day(day)
    lines: list[str] = []
    in_ledger = set(ledger.pipelines())
    for pipeline in REGISTRY.values():
        if not (pipeline.runs_by_day or pipeline.name in in_ledger or pipeline.name in extras):
            continue
        extra = extras.get(pipeline.name)
        unit = unit_of(pipeline, day)  # the day, its month, or the day whose runs are shown
        states = _states(pipeline, None, extra, within=unit)
        if pipeline.unit == RUN:
            runs = sum(1 for s in states if "/" in s.unit)
            lines.append(f"Pipeline {pipeline.name}, day {layout.iso}: {plural(runs, 'run')}")
        elif pipeline.unit == MONTH:
            head = f"Pipeline {pipeline.name}, month {unit} (the month of {layout.iso})"
            # A month is run when someone wants its stats: one not run is not a gap to report.
            first = pipeline.rerun(pipeline.step_names[0], unit)
            lines.append(head if states else f"{head}: nothing recorded (its first step: {first})")
        else:
            states = states or [UnitState.read(pipeline, unit, {})]
            lines.append(f"Pipeline {pipeline.name}, day {unit}")
        if states:
            lines += _detail_table(pipeline, states)
            for state in states:
                lines += _detail_notes(state, layout.iso, extra)
            lines += _next(pipeline, states, layout)
        lines += [line.rstrip() for line in extra.notes] if extra else []
    return lines


def _detail_table(pipeline: Pipeline, states: list[UnitState]) -> list[str]:
    by_run = pipeline.unit == RUN
    rows = []
    for state in states:
        steps = [s for s in state.steps if s in state.entries or s in state.running] if by_run else state.steps
        for step in steps:
            entry = state.entries.get(step)
            status = "running" if step in state.running else outcome(entry) if entry else "not run"
            run = (state.unit.partition("/")[2] or "-") if by_run else None
            rows.append((run, step, status, rows_text((entry or {}).get("rows")), seconds_text(entry or {}), entry))
    width = {
        "run": max([4, *(len(r[0]) + 2 for r in rows if r[0])]),
        "step": max([17, *(len(r[1]) + 1 for r in rows)]),
        "status": max([12, *(len(r[2]) + 1 for r in rows)]),
    }
    run_head = f"{'run':<{width['run']}}" if by_run else ""
    lines = [
        f"{run_head}{'step':<{width['step']}}{'status':<{width['status']}}{'rows':>8}{'seconds':>9}  finished (UTC)"
    ]
    for run, step, status, count, seconds, entry in rows:
        finished = entry["finished_at"] if entry else ""
        head = f"{run:<{width['run']}}" if by_run else ""
        lines.append(f"{head}{step:<{width['step']}}{status:<{width['status']}}{count:>8}{seconds:>9}  {finished}")
    return [line.rstrip() for line in lines]


def _detail_notes(state: UnitState, iso: str, extra: Extra | None) -> list[str]:
    lines = []
    where = f" (run {state.unit.partition('/')[2]})" if "/" in state.unit else ""
    for step in state.steps:
        entry = state.entries.get(step)
        if entry and entry["status"] in FAILED and entry["error"] and step not in state.running:
            run = f" --run {state.unit.partition('/')[2]}" if where else ""
            lines.append(f"  {step}{where}: {entry['error'].strip().splitlines()[0]}")
            lines.append(f"    whole error: nw status --date {iso} --error {step}{run}")
        if entry and entry["status"] == "success" and step not in state.running:
            # The attempts that failed or died just before it: what happened to them, once.
            for earlier in entry.get("unsuccessful", [])[-3:]:
                said = (earlier.get("error") or "").strip().splitlines()[:1]
                lines.append(f"  {step}{where}: before it, {earlier['status']}: {said[0] if said else '(no error)'}")
        if entry and entry.get("notes"):
            lines.append(f"  {step}{where}: {entry['notes']}")
    if state.check and extra:
        detail = f" ({state.check.detail})" if state.check.detail else ""
        lines.append(f"  {extra.column}: {state.check.value}{detail}")
    return lines


def _next(pipeline: Pipeline, states: list[UnitState], layout: DayLayout) -> list[str]:
    """What the units of the day need: done, running, stale, or the command to run."""
    lines = []
    for state in states:
        verdict, action = state.verdict()
        label = ""
        if pipeline.unit == RUN:  # several units a day: say which
            day, _, run = state.unit.partition("/")
            label = f"Run {run}: " if run else f"Day {day}: "
        said = f"{label}{verdict}" if label else verdict[:1].upper() + verdict[1:]
        if verdict == "done":
            if pipeline.unit == RUN:
                continue  # a run pipeline's units: only the ones with something to do
            # A day pipeline's outputs are the day's; the others' name no single day.
            days = pipeline.outputs if pipeline.runs_by_day else ()
            outputs = ", ".join(str(layout.data_dir / o.format(day=layout.iso)) for o in days)
            lines.append("All steps done." + (f" Outputs: {outputs}" if outputs else ""))
        elif verdict.startswith("running"):
            lines.append(f"{label}Running: {action}")
        elif verdict.startswith("stale"):
            lines.append(f"{label}Stale ({verdict.removeprefix('stale: ')}): rerun from there: {action}")
        elif pipeline.runs_by_day and (verdict == "incomplete" or verdict.startswith(FAILED)):
            lines.append(f"Rerun from the first step not done: {action}")
        elif verdict.startswith(FAILED):
            lines.append(f"{said}; rerun: {action}")
        else:
            lines.append(f"{said}" + (f"; next: {action}" if action else ""))
    if pipeline.unit == RUN and not lines:
        lines.append(f"All {plural(len(states), 'unit')} of the day done.")
    return lines


def step_error(day: dt.date, step: str, run_id: str | None = None) -> tuple[str, int]:
    """The whole recorded error of the step's latest attempt for the day (its month, its runs;
    or the run `run_id` of the day), and its log."""
    try:
        pipeline = pipeline_of_step(step)
    except KeyError:
        known = ", ".join(s for p in REGISTRY.values() for s in p.step_names)
        return f"no step {step!r}; the steps: {known}", 2
    unit = unit_of(pipeline, day, run_id)
    if pipeline.runs_for_one_unit(step):
        units = ledger.latest_by_unit(pipeline.name, pipeline.unit, None, steps=[step], within=unit)
        found = [entries[step] for entries in units.values()]
        entry = max(found, key=lambda e: e["id"]) if found else None
    else:
        entry = ledger.latest_of_steps(pipeline.name, [step]).get(step)
    if entry is None:
        return f"{step} has not run for {unit}", 1
    said = [f"{step} for {entry['unit']}: {entry['status']} at {entry['finished_at']}"]
    said.append(entry["error"] or entry.get("notes") or "(no error recorded)")
    if entry.get("log"):
        said.append(f"Full log: {entry['log']}")
    return "\n".join(said), 0
