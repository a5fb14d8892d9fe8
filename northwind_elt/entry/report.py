"""`nw report`: a static HTML page of charts drawn from the run ledger (what `nw status` reads).

For every pipeline the ledger holds, over its recent days (a month pipeline: months; a run
pipeline's runs add up per day):
  - the rows each step wrote and its wall seconds (`nw run`'s, Meltano's start-up included,
    else the attempt's own duration), from the step's latest attempt, as `nw status` shows it;
  - failures marked on their step's bars (a ✕ and a red outline; hovering names the error):
    a latest attempt that failed, or a success after failed attempts;
  - the pipeline's health over time: steps succeeded and attempts failed per day.

plotly draws the charts. Its script is written beside the page (plotly.min.js), so the page
opens offline and from a file. plotly is imported here only, by `nw report`: `nw --help` and
the other commands never load it.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from northwind_elt.core import ledger, settings, text
from northwind_elt.pipelines import REGISTRY
from northwind_elt.protocol.definition import DAY, MONTH

FAILURE_MARK = "✕"
FAILURE_COLOR = "#d62728"
SUCCESS_COLOR = "#2ca02c"
# One colour per step, in the pipeline's order (plotly's default sequence, written out so that
# building the data needs no plotly).
STEP_COLORS = ("#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")
DEFAULT_LAST = 30
PLOTLY_JS = "plotly.min.js"


def default_dir() -> Path:
    return settings.data_dir() / "report"


def _first_line(error: str | None) -> str:
    line = next((part.strip() for part in (error or "").splitlines() if part.strip()), "")
    return line if len(line) <= 200 else line[:199] + "…"


def _seconds(entry: dict[str, Any]) -> float | None:
    """The step's wall seconds as `nw run` saw them, else the attempt's own duration (as status shows)."""
    return entry["wall_s"] if entry.get("wall_s") is not None else entry.get("duration_s")


@dataclass
class Cell:
    """A step's outcome in one column (a day or a month): its latest attempt and the failed
    or interrupted attempts just before it; a run pipeline's runs of the day added up."""

    status: str  # "success" when every latest attempt in the column succeeded, else the failing one's
    rows: int | None
    seconds: float | None
    failed: int  # failed or interrupted attempts
    errors: list[str] = field(default_factory=list)  # their first lines, oldest first

    @classmethod
    def of(cls, entry: dict[str, Any]) -> Cell:
        attempts = [*entry.get("unsuccessful", []), entry]
        failures = [a for a in attempts if a["status"] in ledger.FAILED]
        errors = [_first_line(a.get("error")) or a["status"] for a in failures]
        return cls(entry["status"], entry.get("rows"), _seconds(entry), len(failures), errors)

    def add(self, other: Cell) -> None:
        """Another run of the same day."""
        if other.status != "success":
            self.status = other.status
        self.rows = None if self.rows is None and other.rows is None else (self.rows or 0) + (other.rows or 0)
        if other.seconds is not None:
            self.seconds = (self.seconds or 0.0) + other.seconds
        self.failed += other.failed
        self.errors += other.errors

    @property
    def outcome(self) -> str:
        if self.status != "success":
            return self.status
        return "success" + (f" after {text.plural(self.failed, 'failed attempt')}" if self.failed else "")


@dataclass
class History:
    """One pipeline's recent columns (days or months, oldest first) and each step's cell in them."""

    pipeline: str
    description: str
    column_kind: str  # "day" or "month"
    steps: list[str]
    columns: list[str]
    cells: dict[tuple[str, str], Cell]

    def cell(self, column: str, step: str) -> Cell | None:
        return self.cells.get((column, step))

    def rows(self, step: str) -> list[int | None]:
        """Each column's rows of the step; 0 for a latest attempt that failed (its mark sits on the axis)."""
        found = []
        for column in self.columns:
            cell = self.cell(column, step)
            found.append(None if cell is None else 0 if cell.rows is None and cell.status != "success" else cell.rows)
        return found

    def seconds(self, step: str) -> list[float | None]:
        return [cell.seconds if (cell := self.cell(column, step)) else None for column in self.columns]

    def marks(self, step: str) -> list[str]:
        return [FAILURE_MARK if (cell := self.cell(column, step)) and cell.failed else "" for column in self.columns]

    def succeeded(self) -> list[int]:
        """Per column: the steps whose latest attempt succeeded."""
        return [
            sum(1 for step in self.steps if (cell := self.cell(c, step)) and cell.status == "success")
            for c in self.columns
        ]

    def failed_attempts(self) -> list[int]:
        return [sum(cell.failed for step in self.steps if (cell := self.cell(c, step))) for c in self.columns]

    def failures(self) -> list[tuple[str, str, Cell]]:
        """(column, step, cell) of every cell with a failed attempt, newest column first."""
        return [
            (column, step, cell)
            for column in reversed(self.columns)
            for step in self.steps
            if (cell := self.cell(column, step)) and cell.failed
        ]


def history(name: str, last: int | None = DEFAULT_LAST) -> History:
    """The pipeline's `last` most recent columns from the ledger."""
    definition = REGISTRY.get(name)
    kind = definition.unit if definition else DAY
    units = ledger.latest_by_unit(name, kind, None)
    cells: dict[tuple[str, str], Cell] = {}
    seen_steps: list[str] = []
    # Oldest first; a run (YYYY-MM-DD/<run id>) adds up into its day.
    for unit in sorted(units, key=lambda u: (u[:10], u)):
        column = unit[:10]
        for step, entry in units[unit].items():
            if step not in seen_steps:
                seen_steps.append(step)
            cell = Cell.of(entry)
            if (column, step) in cells:
                cells[(column, step)].add(cell)
            else:
                cells[(column, step)] = cell
    columns = sorted({column for column, _ in cells})
    columns = columns[-last:] if last else columns
    known = list(definition.step_names) if definition else []
    steps = known + sorted(s for s in seen_steps if s not in known)
    steps = [s for s in steps if any((c, s) in cells for c in columns)]
    return History(
        pipeline=name,
        description=definition.description if definition else "",
        column_kind=MONTH if kind == MONTH else DAY,
        steps=steps,
        columns=columns,
        cells={key: cell for key, cell in cells.items() if key[0] in columns},
    )


def histories(last: int | None = DEFAULT_LAST) -> list[History]:
    """Every pipeline the ledger holds, in the registry's order, then any other it names."""
    recorded = ledger.pipelines()
    names = [n for n in REGISTRY if n in recorded] + [n for n in recorded if n not in REGISTRY]
    return [found for name in names if (found := history(name, last)).columns]


# --- charts ------------------------------------------------------------------------------


def _hover(history: History, column: str, step: str) -> str:
    cell = history.cell(column, step)
    if cell is None:
        return ""
    parts = [f"<b>{html.escape(step)}</b> {column}: {cell.outcome}"]
    if cell.rows is not None:
        parts.append(text.plural(cell.rows, "row"))
    if cell.seconds is not None:
        parts.append(f"{text.seconds(cell.seconds)} s")
    parts += [f"{FAILURE_MARK} {html.escape(error)}" for error in cell.errors[-3:]]
    return "<br>".join(parts)


def figure(history: History):
    """Three charts over the same columns: rows, wall seconds (a bar per step) and health."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    per = "month" if history.column_kind == MONTH else "day"
    fig = make_subplots(
        rows=3,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.09,
        subplot_titles=(
            f"Rows written per step and {per}",
            f"Wall seconds per step and {per}",
            f"Health: steps succeeded and attempts failed per {per}",
        ),
    )
    x = history.columns
    for n, step in enumerate(history.steps):
        color = STEP_COLORS[n % len(STEP_COLORS)]
        marks = history.marks(step)
        outline = {
            "color": [FAILURE_COLOR if mark else color for mark in marks],
            "width": [3 if mark else 0 for mark in marks],
        }
        hover = [_hover(history, column, step) for column in x]
        for row, values in ((1, history.rows(step)), (2, history.seconds(step))):
            fig.add_trace(
                go.Bar(
                    name=step,
                    legendgroup=step,
                    # A bar per step side by side, laid out in each chart alone (the x axes are shared).
                    alignmentgroup=f"chart-{row}",
                    offsetgroup=step,
                    showlegend=row == 1,
                    x=x,
                    y=values,
                    marker={"color": color, "line": outline},
                    text=marks,
                    textposition="outside",
                    textfont={"color": FAILURE_COLOR, "size": 16},
                    cliponaxis=False,
                    hovertext=hover,
                    hoverinfo="text",
                ),
                row=row,
                col=1,
            )
    succeeded, failed = history.succeeded(), history.failed_attempts()
    # Stacked by hand (one offset group, the failures based on the successes): the charts above
    # need barmode "group", which is the whole figure's.
    for name, values, base, color in (
        ("steps succeeded", succeeded, None, SUCCESS_COLOR),
        ("attempts failed", failed, succeeded, FAILURE_COLOR),
    ):
        fig.add_trace(
            go.Bar(
                name=name,
                legendgroup="health",
                x=x,
                y=values,
                base=base,
                alignmentgroup="chart-3",
                offsetgroup="health",
                marker={"color": color},
                text=[str(v) if v else "" for v in values],
                textposition="inside",
                hovertemplate=f"%{{x}}: %{{y}} {name}<extra></extra>",
            ),
            row=3,
            col=1,
        )
    fig.update_xaxes(type="category")
    fig.update_yaxes(title_text="rows", row=1, col=1, rangemode="tozero")
    fig.update_yaxes(title_text="seconds", row=2, col=1, rangemode="tozero")
    fig.update_yaxes(title_text="count", row=3, col=1, rangemode="tozero")
    fig.update_layout(
        barmode="group",
        height=820,
        margin={"l": 60, "r": 20, "t": 60, "b": 40},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.05, "x": 0},
        hoverlabel={"align": "left"},
    )
    return fig


# --- the page ----------------------------------------------------------------------------

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
td.n { text-align: right; }
tr.failed td { background: #fdecea; }
table.failures td:nth-child(-n+3) { white-space: nowrap; }
.mark { color: #d62728; font-weight: bold; }
section { margin-top: 2em; }
p.note { color: #555; }
"""


def _summary_rows(found: list[History]) -> list[str]:
    rows = []
    for history in found:
        newest = history.columns[-1]
        failing = [s for s in history.steps if (c := history.cell(newest, s)) and c.status != "success"]
        done = sum(1 for s in history.steps if (c := history.cell(newest, s)) and c.status == "success")
        state = f"failed at {', '.join(failing)}" if failing else f"{text.plural(done, 'step')} succeeded"
        attempts = sum(history.failed_attempts())
        rows.append(
            f'<tr class="{"failed" if failing else "ok"}"><td><a href="#pipeline-{_anchor(history.pipeline)}">'
            f"{html.escape(history.pipeline)}</a></td><td>{history.columns[0]} to {newest}</td>"
            f"<td class='n'>{text.number(len(history.columns))}</td><td>{newest}: {html.escape(state)}</td>"
            f"<td class='n'>{text.number(attempts)}</td></tr>"
        )
    return rows


def _anchor(name: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", name.lower())


def _failure_table(history: History) -> str:
    rows = [
        f'<tr class="failed"><td>{column}</td><td>{html.escape(step)}</td><td>{html.escape(cell.outcome)}</td>'
        f"<td><span class='mark'>{FAILURE_MARK}</span> {html.escape(cell.errors[-1])}</td></tr>"
        for column, step, cell in history.failures()
    ]
    if not rows:
        return "<p>No failed attempt in these columns.</p>"
    head = f"<tr><th>{history.column_kind}</th><th>step</th><th>outcome</th><th>latest error</th></tr>"
    return f'<table class="failures">{head}{"".join(rows)}</table>'


def page(found: list[History], last: int | None) -> str:
    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    span = f", the last {text.plural(last, 'day')} (months) of each pipeline" if last else ""
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8"><title>northwind-elt: runs by day</title>',
        f'<script src="{PLOTLY_JS}" charset="utf-8"></script><style>{_STYLE}</style></head><body>',
        "<h1>northwind-elt: runs by day</h1>",
        f"<p class='note'>From the ledger {html.escape(ledger.where())}, {generated}"
        f"{span}. Each bar is a step's latest"
        f" attempt (a run pipeline: its runs of the day added up). <span class='mark'>{FAILURE_MARK}</span> and a"
        " red outline: the step failed or was interrupted there (its latest attempt, or attempts before a"
        " success); hover over a bar for its error. What to rerun: <code>nw status</code>.</p>",
    ]
    if not found:
        parts.append("<p>Nothing has run yet: the ledger holds no attempt. Start with <code>make run</code>.</p>")
    else:
        head = "<tr><th>pipeline</th><th>from, to</th><th>columns</th><th>latest</th><th>failed attempts</th></tr>"
        parts.append(f'<table class="summary">{head}{"".join(_summary_rows(found))}</table>')
    for history in found:
        chart = figure(history).to_html(
            full_html=False,
            include_plotlyjs=False,
            div_id=f"chart-{_anchor(history.pipeline)}",
            config={"displaylogo": False, "responsive": True},
        )
        parts += [
            f'<section id="pipeline-{_anchor(history.pipeline)}"><h2>{html.escape(history.pipeline)}</h2>',
            f"<p class='note'>{html.escape(history.description)}</p>" if history.description else "",
            chart,
            _failure_table(history),
            "</section>",
        ]
    parts.append("</body></html>")
    return "\n".join(parts)


def write(out_dir: Path | None = None, last: int | None = DEFAULT_LAST) -> tuple[Path, list[History]]:
    """The page (index.html) and plotly's script in `out_dir` (default: $NW_DATA_DIR/report)."""
    from plotly.offline import get_plotlyjs

    out_dir = (out_dir or default_dir()).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    found = histories(last)
    script = out_dir / PLOTLY_JS
    code = get_plotlyjs()
    if not script.exists() or script.read_text(encoding="utf-8") != code:
        script.write_text(code, encoding="utf-8")
    index = out_dir / "index.html"
    partial = index.with_name(".index.html.partial")
    partial.write_text(page(found, last), encoding="utf-8")
    partial.replace(index)  # a browser reloading it never sees half a page
    return index, found


def report(out_dir: Path | None, last: int | None) -> int:
    """`nw report`: write the page, print where it is and what it shows."""
    index, found = write(out_dir, last)
    if not found:
        print(f"Nothing has run yet (ledger {ledger.where()}): the report has no charts. Start with: make run")
    else:
        shown = ", ".join(f"{h.pipeline} {text.plural(len(h.columns), h.column_kind)}" for h in found)
        failed = sum(sum(h.failed_attempts()) for h in found)
        print(f"Report of {shown}; {text.plural(failed, 'failed attempt')} marked")
    print(f"Open it in a browser: {index}")
    return 0
