"""A pipeline's units in the ledger: the key a step records under, and what a unit holds.

The ledger keys attempts by unit: a day "YYYY-MM-DD", a month "YYYY-MM", a run
"YYYY-MM-DD/<run id>". A run pipeline's step that works per day (ads' archive) records
under the day.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from northwind_elt.core import ledger
from northwind_elt.protocol.definition import DAY, MONTH, RUN, Pipeline

# The unit keys each kind of pipeline records under.
_KINDS = {DAY: (DAY,), MONTH: (MONTH,), RUN: (RUN, DAY)}


def unit_of(pipeline: Pipeline, day: dt.date, run_id: str | None = None) -> str:
    """The ledger key of the unit `pipeline` works on for `day`: the day, its month, or (a run
    pipeline given `run_id`) the run; a run pipeline's per-day step passes no run id."""
    if pipeline.unit == MONTH:
        return ledger.month_key(day.year, day.month)
    if pipeline.unit == RUN and run_id:
        return ledger.run_key(day, run_id)
    return day.isoformat()


def needed_steps(pipeline: Pipeline) -> tuple[str, ...]:
    """The steps a unit is incomplete without: those on the pipeline's schedule. A step with a
    schedule of its own (ads' hourly load, daily archive) runs alone: its absence is no gap."""
    return tuple(step.name for step in pipeline.steps if not step.schedule)


def record(pipeline: Pipeline, unit: dt.date | str, step: str, status: str, **kwargs: Any) -> None:
    """`ledger.record` for a step of `pipeline` and a unit of its kind. A day (a date or its key)
    of a month pipeline is recorded under its month; a key of another kind (ValueError), or a
    step not of the pipeline (KeyError), is refused."""
    pipeline.step(step)
    key = ledger.unit_key(unit)
    if pipeline.unit == MONTH and ledger.kind_of(key) == DAY:
        key = key[:7]
    if ledger.kind_of(key) not in _KINDS[pipeline.unit]:
        raise ValueError(
            f"{pipeline.name} records by {pipeline.unit}: {key!r} is a {ledger.kind_of(key)} "
            f"(a {' or '.join(_KINDS[pipeline.unit])} key is needed)"
        )
    ledger.record(pipeline.name, key, step, status, **kwargs)
