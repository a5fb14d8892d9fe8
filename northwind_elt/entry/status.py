"""`nw status`: every pipeline's recent days, or one day in detail, from the ledger and the locks.

The ledger holds each step's attempts; the leases say which steps run right now. A day is
`running` while a step holds its lease, `failed` when a step's latest attempt failed,
`stale` when a step finished after a step that reads its output (the downstream step
still holds the older data), `done` when every step succeeded, `incomplete` otherwise.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from northwind_elt.core import ledger, locks
from northwind_elt.core.day import DayLayout
from northwind_elt.core.errors import rerun_command
from northwind_elt.pipelines import PIPELINES

# Pipelines outside pipelines.py (their own commands, several runs a day or a month).
OTHER_STEPS: dict[str, tuple[str, ...]] = {
    "ads": ("ads-load", "ads-archive"),
    "padam": ("padam-insert-month", "padam-prepare", "padam-export"),
}
FAILED = ("failed", "interrupted")


def steps_of(pipeline: str, seen: Iterable[str] = ()) -> tuple[str, ...]:
    if pipeline in PIPELINES:
        return PIPELINES[pipeline].step_names
    known = OTHER_STEPS.get(pipeline, ())
    return known + tuple(sorted(set(seen) - set(known)))


def rerun_of(pipeline: str, step: str, day: str) -> str:
    """The command that reruns `step` of the day (and the steps after it, for a daily pipeline)."""
    if pipeline in PIPELINES:
        return rerun_command(step, day)
    if pipeline == "ads":
        return f"nw ads {step.removeprefix('ads-')} --date {day}"
    if pipeline == "padam" and step != "padam-prepare":
        return f"nw padam {step.removeprefix('padam-')} {day[:4]} {day[5:7]}"
    return f"nw {pipeline} {step.removeprefix(pipeline + '-')}"


@dataclass
class DayState:
    pipeline: str
    day: str
    entries: dict[str, dict[str, Any]]
    running: dict[str, locks.Holder] = field(default_factory=dict)

    @classmethod
    def read(cls, pipeline: str, day: str, entries: dict[str, dict[str, Any]]) -> DayState:
        running = {s: h for s in steps_of(pipeline, entries) if (h := locks.running(pipeline, s, day))}
        return cls(pipeline, day, entries, running)

    @property
    def steps(self) -> tuple[str, ...]:
        return steps_of(self.pipeline, self.entries)

    def first_not_done(self) -> str:
        return next(s for s in self.steps if (self.entries.get(s) or {}).get("status") != "success")

    def stale(self) -> tuple[str, str] | None:
        """(upstream, downstream): the first step that succeeded after a step reading its output."""
        definition = PIPELINES.get(self.pipeline)
        if definition is None:
            return None
        for step in definition.steps:
            down = self.entries.get(step.name)
            if not down or down["status"] != "success":
                continue
            for upstream in step.needs:
                up = self.entries.get(upstream)
                if up and up["status"] == "success" and up["finished_at"] > down["finished_at"]:
                    return upstream, step.name
        return None

    def verdict(self) -> tuple[str, str | None]:
        """(state, what to do): running, failed at S, stale, done, incomplete."""
        if self.running:
            step, holder = next(iter(self.running.items()))
            return f"running {step}", f"wait: {step} runs in process {holder.pid}"
        for step in self.steps:
            entry = self.entries.get(step)
            if entry and entry["status"] in FAILED:
                # A daily pipeline reruns from its first step not done (a load refused for want of
                # an extract reruns from that extract); the others rerun the failed command.
                first = self.first_not_done() if self.pipeline in PIPELINES else step
                return f"{entry['status']} at {step}", rerun_of(self.pipeline, first, self.day)
        if stale := self.stale():
            upstream, downstream = stale
            return (
                f"stale: {upstream} newer than {downstream}",
                rerun_of(self.pipeline, downstream, self.day),
            )
        if self.pipeline not in PIPELINES:
            return "ok", None
        missing = [s for s in self.steps if s not in self.entries]
        if not missing:
            return "done", None
        return "incomplete", rerun_of(self.pipeline, missing[0], self.day)

    def cell(self, step: str) -> str:
        if holder := self.running.get(step):
            return f"running\npid {holder.pid}"
        entry = self.entries.get(step)
        if entry is None:
            return "-"
        status = entry["status"]
        if entry.get("attempts", 1) > 1:
            status += f" x{entry['attempts']}"
        details = " ".join(filter(None, (_rows(entry), _seconds(entry))))
        return f"{status}\n{details}" if details else status


def _rows(entry: dict[str, Any]) -> str:
    return "" if entry.get("rows") is None else f"{entry['rows']:,} rows"


def _seconds(entry: dict[str, Any]) -> str:
    seconds = entry.get("wall_s") if entry.get("wall_s") is not None else entry.get("duration_s")
    return "" if seconds is None else f"{seconds:.1f} s"


def console() -> Console:
    # A pipe or a file gets plain text, wide enough not to fold the table.
    plain = not os.isatty(1)
    return Console(highlight=False, no_color=plain, width=160 if plain else None, soft_wrap=False)


def overview(days: int) -> int:
    """A table per pipeline: its `days` most recent days by steps, and what to do about each day."""
    out = console()
    data = ledger.latest_by_day(days)
    if not data:
        out.print(f"Nothing has run yet (ledger {ledger.ledger_path()}). Start with: make run")
        return 0
    todo: list[str] = []
    for pipeline in sorted(data, key=lambda p: (p not in PIPELINES, p)):
        states = [DayState.read(pipeline, day, entries) for day, entries in data[pipeline].items()]
        steps = steps_of(pipeline, {s for state in states for s in state.entries})
        days_shown = f"{len(states)} day" + ("s" if len(states) > 1 else "")
        table = Table(title=f"{pipeline}: last {days_shown}", title_justify="left", box=box.SIMPLE_HEAD)
        table.add_column("day", no_wrap=True)
        for step in steps:
            table.add_column(step, no_wrap=True)
        table.add_column("day state")
        for state in states:
            verdict, action = state.verdict()
            table.add_row(state.day, *(state.cell(s) for s in steps), verdict)
            if action:
                todo.append(f"{pipeline} {state.day}: {verdict} -> {action}")
        with out.capture() as captured:
            out.print(table)
        print("\n".join(line.rstrip() for line in captured.get().splitlines()))  # no padding in files
    if todo:
        out.print("To do:")
        for line in todo:
            out.print(f"  {line}", markup=False)
    out.print("One day in detail: nw status --date DAY; a step's whole error: nw status --date DAY --error STEP")
    return 0


def day_detail(day: dt.date) -> list[str]:
    """Each pipeline's steps of the day: status, rows, wall seconds, errors, what to rerun."""
    layout = DayLayout.for_day(day)
    lines: list[str] = []
    for pipeline in PIPELINES.values():
        state = DayState.read(pipeline.name, layout.iso, ledger.latest(pipeline.name, day))
        lines.append(f"Pipeline {pipeline.name}, day {layout.iso}")
        lines.append(f"{'step':<17}{'status':<12}{'rows':>8}{'seconds':>9}  finished (UTC)")
        for step in pipeline.step_names:
            entry = state.entries.get(step)
            status = "running" if step in state.running else entry["status"] if entry else "not run"
            rows = "" if not entry or entry["rows"] is None else entry["rows"]
            seconds = _seconds(entry or {}).removesuffix(" s")
            lines.append(f"{step:<17}{status:<12}{rows!s:>8}{seconds:>9}  {entry['finished_at'] if entry else ''}")
        for step in pipeline.step_names:
            entry = state.entries.get(step)
            if entry and entry["status"] in FAILED and entry["error"] and step not in state.running:
                lines.append(f"  {step}: {entry['error'].strip().splitlines()[0]}")
                lines.append(f"    whole error: nw status --date {layout.iso} --error {step}")
            if entry and entry.get("notes"):
                lines.append(f"  {step}: {entry['notes']}")
        verdict, action = state.verdict()
        if verdict == "done":
            outputs = ", ".join(str(layout.data_dir / o.format(day=layout.iso)) for o in pipeline.outputs)
            lines.append(f"All steps done. Outputs: {outputs}")
        elif verdict.startswith("running"):
            lines.append(f"Running: {action}")
        elif verdict.startswith("stale"):
            lines.append(f"Stale ({verdict.removeprefix('stale: ')}): rerun from there: {action}")
        else:
            lines.append(f"Rerun from the first step not done: {action}")
    return lines


def step_error(day: dt.date, step: str) -> tuple[str, int]:
    """The whole recorded error of the step's latest attempt of the day, and its log."""
    for pipeline in [*PIPELINES, *OTHER_STEPS]:
        if step in steps_of(pipeline):
            entry = ledger.latest(pipeline, day).get(step)
            break
    else:
        known = ", ".join(s for p in [*PIPELINES, *OTHER_STEPS] for s in steps_of(p))
        return f"no step {step!r}; the steps: {known}", 2
    if entry is None:
        return f"{step} has not run for {day}", 1
    text = [f"{step} for {day}: {entry['status']} at {entry['finished_at']}"]
    text.append(entry["error"] or entry.get("notes") or "(no error recorded)")
    if entry.get("log"):
        text.append(f"Full log: {entry['log']}")
    return "\n".join(text), 0
