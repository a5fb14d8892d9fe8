"""Where a day's wall seconds went, from the logs `nw run` keeps (data/logs/<day>/<step>-*.log).

Meltano prefixes every line with a timestamp and the name of the process that wrote it
(Meltano itself, a task of `nw`, a tap, a target, dbt). Each run of lines from one process is
a segment; a segment's seconds run from the end of the segment before it to its own last
line, so a process's start-up (the silence before its first line) counts as its own. For the
newest run of each step of the day:

    .venv/bin/python scripts/profile_day.py --date 2024-01-15 [--data-dir DIR] [--pipeline northwind]

prints one row per segment (step, process, what it said first, seconds) and each step's
total. Steps that ran side by side are listed one after the other; their seconds overlap.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from northwind_elt.pipelines import REGISTRY

LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z \[\s*\w+\s*\] (\S+)\s+(.*)$")
# Lines that end a phase of one process (dbt's start-up and parse, its build), so the phase
# before them is a segment of its own: (pattern, what the segment that ends there was).
PHASE_ENDS = (
    (re.compile(r"\d\d:\d\d:\d\d  Running with dbt="), "dbt start-up (Python, imports)"),
    (re.compile(r"\d\d:\d\d:\d\d  Found \d+ models"), "dbt parse (partial when it can)"),
    (re.compile(r"\d\d:\d\d:\d\d  Finished running"), "dbt build (models, tests)"),
)
# What names a segment better than its first line: Meltano's own milestones.
MELTANO_WHAT = (
    ("Running catalog discovery", "catalog discovery (the tap, --discover)"),
    ("Block run completed", "block done"),
    ("Environment", "start-up"),
)


def segments(log: Path, previous_end: dt.datetime | None) -> tuple[list[tuple[str, str, float]], dt.datetime | None]:
    """(process, what, seconds) for each run of lines one process wrote, and the last line's time.
    A log that does not begin with Meltano's start (a step chained after another in one Meltano
    run) carries on from `previous_end`, the end of the step before it."""
    found: list[tuple[str, str, float]] = []
    starts_meltano = False
    who, first, last = None, "", None
    for raw in log.read_text(errors="replace").splitlines():
        match = LINE.match(raw)
        if not match:
            continue
        when = dt.datetime.fromisoformat(match.group(1))
        name, text = match.group(2), match.group(3)
        if who is None and not found:
            starts_meltano = name == "meltano" and text.startswith("Meltano ")
            if starts_meltano or previous_end is None:
                previous_end = when
        if name != who:
            if who is not None and last is not None:
                found.append((who, first, (last - (previous_end or last)).total_seconds()))
                previous_end = last
            who, first = name, text
        phase = next((what for pattern, what in PHASE_ENDS if pattern.search(text)), None)
        if phase is not None:  # the phase ends with this line
            found.append((who, phase, (when - (previous_end or when)).total_seconds()))
            previous_end, first = when, "(after) " + text
        last = when
    if who is not None and last is not None:
        found.append((who, first, (last - (previous_end or last)).total_seconds()))
    return found, last


def describe(who: str, text: str) -> str:
    if who == "meltano":
        return next((label for prefix, label in MELTANO_WHAT if text.startswith(prefix)), text[:60])
    return text[:60]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--date", required=True)
    parser.add_argument("--data-dir", default=os.environ.get("NW_DATA_DIR", "data"))
    parser.add_argument("--pipeline", default="northwind", choices=sorted(REGISTRY))
    args = parser.parse_args()
    folder = Path(args.data_dir) / "logs" / args.date
    pipeline = REGISTRY[args.pipeline]
    total, previous_end = 0.0, None
    print("| step | process | what | seconds |\n|---|---|---|---:|")
    for step in pipeline.steps:
        logs = sorted(folder.glob(f"{step.job}-*.log"))
        if not logs:
            continue
        step_total = 0.0
        found, previous_end = segments(logs[-1], previous_end)
        for who, text, seconds in found:
            step_total += seconds
            print(f"| {step.name} | {who} | {describe(who, text)} | {seconds:.2f} |")
        print(f"| **{step.name}** | | **total** | **{step_total:.2f}** |")
        total += step_total
    print(f"| | | **all steps (side-by-side steps overlap)** | **{total:.2f}** |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
