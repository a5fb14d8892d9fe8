"""The day contract: the one place that turns a date into paths, markers and dbt vars.

Every step reads its day from `RUN_DATE` (unset means today, UTC). The value ends up
in file paths, so it is validated strictly before anything is written.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass
from pathlib import Path

from northwind_elt import settings

DAY_ENV = "RUN_DATE"
MAX_FUTURE_ENV = "RUN_DATE_MAX_FUTURE_DAYS"
_DAY_PATTERN = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")

# The steps of a day, in order. Step-1 steps produce files; the rest build on them.
EXTRACT_STEPS = {"extract-postgres": "postgres", "extract-csv": "csv"}
STEPS = ("extract-postgres", "extract-csv", "load", "transform", "export")
LOAD_STEP = "load"
CSV_TABLE = "order_details"
MART = "orders_with_details"


class InvalidDay(ValueError):
    """The day given is not a real YYYY-MM-DD day in the allowed range."""


def today_utc() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def parse_day(text: str, *, max_future_days: int | None = None, today: dt.date | None = None) -> dt.date:
    """Parse a day strictly: exactly YYYY-MM-DD, a real calendar day, not too far ahead."""
    hint = "Give the day as YYYY-MM-DD, e.g. RUN_DATE=2024-01-15 (or make run DATE=2024-01-15)."
    if not _DAY_PATTERN.fullmatch(text):
        raise InvalidDay(f"invalid day {text!r}: not in YYYY-MM-DD form. {hint}")
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise InvalidDay(f"invalid day {text!r}: no such calendar day. {hint}") from None
    if max_future_days is None:
        max_future_days = int(os.environ.get(MAX_FUTURE_ENV, "1"))
    limit = (today or today_utc()) + dt.timedelta(days=max_future_days)
    if day > limit:
        raise InvalidDay(
            f"invalid day {text!r}: more than {max_future_days} day(s) after today (UTC). "
            f"Set {MAX_FUTURE_ENV} to allow it."
        )
    return day


def day_from_env() -> dt.date:
    """The day of this run: RUN_DATE if set (an empty value is an error), else today UTC."""
    raw = os.environ.get(DAY_ENV)
    if raw is None:
        return today_utc()
    return parse_day(raw)


@dataclass(frozen=True)
class DayLayout:
    """Where everything of one day lives under the data directory."""

    day: dt.date
    data_dir: Path

    @classmethod
    def current(cls) -> DayLayout:
        return cls(day_from_env(), settings.data_dir())

    @property
    def iso(self) -> str:
        return self.day.isoformat()

    # Step 1 outputs: one partition (directory) per table per day.
    def partition_dir(self, dataset: str, table: str) -> Path:
        if dataset == "csv":
            return self.data_dir / "csv" / self.iso
        return self.data_dir / dataset / table / self.iso

    def partition_file(self, dataset: str, table: str) -> Path:
        return self.partition_dir(dataset, table) / f"{table}.parquet"

    def partition_manifest(self, dataset: str, table: str) -> Path:
        return self.partition_dir(dataset, table) / f"{table}.manifest.json"

    def step_manifest(self, step: str) -> Path:
        """Written last by a step-1 publish: the day's partitions of that step are complete."""
        return self.data_dir / "_manifests" / self.iso / f"{step}.json"

    def staging_dir(self, name: str) -> Path:
        """Private work area of one step and day; never read by another step."""
        return self.data_dir / ".staging" / name / self.iso

    def staged_marker(self, step: str) -> Path:
        """Written last by target-parquet: the staging area of `step` holds finished files."""
        return self.staging_dir(step) / "_staged.json"

    def load_intent(self) -> Path:
        """Written by tap-parquet before its first record: load id and rows per table."""
        return self.staging_dir(LOAD_STEP) / "intent.json"

    def output_file(self, suffix: str) -> Path:
        return self.data_dir / "output" / self.iso / f"{MART}.{suffix}"

    def lock_file(self, step: str) -> Path:
        return self.data_dir / ".locks" / f"{step}-{self.iso}.lock"


def rerun_command(step: str, day: dt.date) -> str:
    return f"make run DATE={day.isoformat()} JOB={step}"
