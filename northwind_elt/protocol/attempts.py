"""The ledger writer of the steps an `nw` command runs itself (PADAM's and ads' steps).

An attempt of a step is recorded once it ends, under its unit: a day (a date), a month
("YYYY-MM") or a run ("YYYY-MM-DD/<run id>"), checked against the pipeline's unit by
`units.record`. As in the day protocol, a success is recorded by what finished the work (a
Meltano job's commit task, or the command itself), a failure or an interruption by the entry
point.

A success that cannot be recorded fails the step: the ledger is what tells the entry point,
`nw status` and a rerun that the work is done. A failure that cannot be recorded is said on
stderr and never hides the failure itself.
"""

from __future__ import annotations

import datetime as dt
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from northwind_elt.core import ledger
from northwind_elt.core.errors import PipelineError
from northwind_elt.protocol import units
from northwind_elt.protocol.definition import Pipeline


@dataclass
class Attempt:
    """One attempt of `step` of `pipeline` for `unit` (None: a unit the command could not
    name, e.g. an invalid month: nothing is recorded, the command's error says why)."""

    pipeline: Pipeline
    step: str
    unit: dt.date | str | None
    started: dt.datetime | None = field(default_factory=ledger.now)
    # The log of the attempt's (latest) Meltano run, recorded with a failure.
    log: Path | None = None

    def succeeded(self, notes: str | None = None, rows: int | None = None) -> None:
        if self.unit is not None:
            units.record(
                self.pipeline, self.unit, self.step, "success", started_at=self.started, rows=rows, notes=notes
            )

    def failed(self, error: str) -> None:
        self._record_failure("failed", error)

    def interrupted(self, signum: int) -> None:
        self._record_failure("interrupted", f"stopped by {signal.Signals(signum).name}")

    def _record_failure(self, status: str, error: str) -> None:
        if self.unit is None:
            return
        try:
            units.record(
                self.pipeline, self.unit, self.step, status, started_at=self.started, error=error, log=self.log
            )
        except ledger.WRITE_ERRORS as err:
            print(f"(ledger {ledger.where()} not updated: {err})", file=sys.stderr)


def succeeded_since(pipeline: Pipeline, step: str, unit: dt.date | str, since: dt.datetime) -> bool:
    """Whether the step's latest attempt for the unit is a success recorded after `since`."""
    return ledger.success_since(pipeline.name, unit, step, since)


@contextmanager
def attempt(pipeline: Pipeline, step: str, unit: dt.date | str | None) -> Iterator[Attempt]:
    """An attempt whose PipelineError (a refusal or a failure, with its cause, fix and rerun) is
    recorded as failed on its way out; the block records its success itself."""
    current = Attempt(pipeline, step, unit)
    try:
        yield current
    except PipelineError as err:
        current.failed(err.message)
        raise
