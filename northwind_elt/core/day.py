"""The day contract: the one place that turns a day into paths, manifests and dbt vars.

The day is resolved once, by the entry point (`nw run`, an Airflow task, a schedule),
and pinned in `RUN_DATE` for every task it starts. A task never computes "today": it
refuses to start without a pinned day. The value ends up in file paths, so it is
validated strictly before anything is written.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import quote, unquote

from northwind_elt.core import settings
from northwind_elt.core.errors import ConfigError
from northwind_elt.core.lake import LAKE_URL_ENV, Lake, from_settings
from northwind_elt.core.text import plural

DAY_ENV = "RUN_DATE"
MAX_FUTURE_ENV = "RUN_DATE_MAX_FUTURE_DAYS"
_DAY_PATTERN = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# A name that becomes a path component takes at most this many bytes once encoded; longer ones
# are shortened with a hash (`path_component`). target-parquet-files (naming.MAX_STEM_BYTES)
# uses the same number and rule, so a staged file and its partition name a table alike
# (tests/unit/test_day.py ties them). The longest file name built around a component,
# "{component}.manifest.json" written through ".{name}.XXXXXXXX.tmp", stays within NAME_MAX.
MAX_NAME_BYTES = 200
NAME_MAX = 255
ATTEMPT_CHARS = 16  # of a run id, in a partition file's name: "{component}.{attempt}.parquet"
LONGEST_AROUND_COMPONENT = len(".") + ATTEMPT_CHARS + len(".parquet") + len(".") + len(".XXXXXXXX.tmp")
assert MAX_NAME_BYTES + LONGEST_AROUND_COMPONENT <= NAME_MAX
HASH_MARK = "%~"  # marks a shortened component: percent-encoding never writes '%' without two hex digits


class InvalidDay(ValueError):
    """The day given is not a real YYYY-MM-DD day in the allowed range."""


class UnsafeName(ValueError):
    """A name that would become a path cannot be represented safely."""


def today_utc() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def parse_day(text: str, *, max_future_days: int | None = None, today: dt.date | None = None) -> dt.date:
    """Parse a day strictly: exactly YYYY-MM-DD, a real calendar day, not too far ahead."""
    hint = "Give the day as YYYY-MM-DD, e.g. nw run --date 2024-01-15 (or make run DATE=2024-01-15)."
    if not _DAY_PATTERN.fullmatch(text):
        raise InvalidDay(f"invalid day {text!r}: not in YYYY-MM-DD form. {hint}")
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise InvalidDay(f"invalid day {text!r}: no such calendar day. {hint}") from None
    if max_future_days is None:
        raw = os.environ.get(MAX_FUTURE_ENV, "1")
        try:
            max_future_days = int(raw)
        except ValueError:
            raise InvalidDay(f"{MAX_FUTURE_ENV}={raw!r} is not a whole number of days; fix it in .env") from None
    limit = (today or today_utc()) + dt.timedelta(days=max_future_days)
    if day > limit:
        raise InvalidDay(
            f"invalid day {text!r}: more than {plural(max_future_days, 'day')} after today (UTC). "
            f"Set {MAX_FUTURE_ENV} to allow it."
        )
    return day


def resolve_day(given: str | None) -> dt.date:
    """For entry points only: the day given, else RUN_DATE, else today (UTC), once."""
    if given is None:
        given = os.environ.get(DAY_ENV)
    return today_utc() if given is None else parse_day(given)


def pinned_day(step: str) -> dt.date:
    """For tasks: the day the entry point pinned. A task never decides what today is."""
    raw = os.environ.get(DAY_ENV)
    if raw is None:
        raise ConfigError(
            f"{step} started without a day: {DAY_ENV} is not set, and a task never decides what today is",
            f"run it through the entry point (`nw run --date YYYY-MM-DD {step}`, or `nw run {step}` for today), "
            f"or set the day yourself: {DAY_ENV}=YYYY-MM-DD meltano run {step}",
            step,
        )
    return parse_day(raw)


def path_component(name: str) -> str:
    """A table or stream name as one safe path component: never '..' or '/', at most MAX_NAME_BYTES.

    The name percent-encoded (a leading '.' too), reversible by `name_of`. An encoding longer
    than MAX_NAME_BYTES keeps its longest head that is whole escapes, then HASH_MARK and 16 hex
    digits of the SHA-256 of the name: two names never share a component, and the real name
    is kept in the partition's manifest (`DayLayout.partitions_on_disk` reads it there).
    """
    if not name:
        raise UnsafeName("an empty table name cannot be stored")
    encoded = quote(name, safe="")
    if encoded.startswith("."):
        encoded = "%2E" + encoded[1:]
    if len(encoded) <= MAX_NAME_BYTES:  # percent-encoded text is ASCII
        return encoded
    suffix = HASH_MARK + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    head = encoded[: MAX_NAME_BYTES - len(suffix)]
    escape = head.rfind("%")
    if escape != -1 and escape > len(head) - 3:
        head = head[:escape]
    return head + suffix


def name_of(component: str) -> str:
    """The name a component encodes; a shortened one (HASH_MARK) is not reversible: its name is
    in the manifest beside it."""
    return unquote(component)


def configured_lake() -> Lake:
    """The lake the settings name (NW_LAKE_URL, else the data directory)."""
    try:
        return from_settings(settings.data_dir())
    except ValueError as err:
        raise ConfigError(str(err), f"fix {LAKE_URL_ENV} in {settings.project_root() / '.env'}") from None


@dataclass(frozen=True)
class DayLayout:
    """Where everything of one day lives: what a step publishes in the lake (`core.lake`, the
    data directory unless NW_LAKE_URL names a bucket), its private work in the data directory."""

    day: dt.date
    data_dir: Path
    lake: Lake | None = None  # None: the data directory itself

    @classmethod
    def for_day(cls, day: dt.date) -> DayLayout:
        return cls(day, settings.data_dir(), configured_lake())

    @property
    def store(self) -> Lake:
        return self.lake if self.lake is not None else Lake.local(self.data_dir)

    @property
    def iso(self) -> str:
        return self.day.isoformat()

    # Step 1 outputs, in the lake: one partition (folder) per table per day, holding the table's
    # file (named per attempt) and its manifest, the partition's commit.
    def partition_dir(self, dataset: str, table: str) -> PurePosixPath:
        if dataset == "csv":
            return self.store.root / "csv" / self.iso
        return self.store.root / dataset / path_component(table) / self.iso

    def partition_file(self, dataset: str, table: str, attempt: str) -> PurePosixPath:
        """The table's file written by one attempt (its run id): never overwritten by a retry."""
        return self.partition_dir(dataset, table) / f"{path_component(table)}.{attempt[:ATTEMPT_CHARS]}.parquet"

    def partition_manifest(self, dataset: str, table: str) -> PurePosixPath:
        return self.partition_dir(dataset, table) / f"{path_component(table)}.manifest.json"

    def partitions_on_disk(self, dataset: str) -> dict[str, PurePosixPath]:
        """Every table of `dataset` with a partition manifest for this day, whatever lists it:
        the table named in the manifest (a shortened file name does not say), else by its file name."""
        lake = self.store
        if dataset == "csv":
            found = lake.glob(lake.root / "csv" / self.iso / "*.manifest.json")
        else:  # a listing of the tables, then one of each table's day: not a walk of every day stored
            found = [
                path
                for table in lake.folders(lake.root / dataset)
                for path in lake.glob(table / self.iso / "*.manifest.json")
            ]
        tables = {}
        for path in found:
            try:
                table = json.loads(lake.read_bytes(path) or b"").get("table")
            except (OSError, ValueError, AttributeError):
                table = None  # unreadable: still there, named by its file
            tables[table if isinstance(table, str) and table else name_of(path.name.removesuffix(".manifest.json"))] = (
                path
            )
        return tables

    def step_manifest(self, step: str) -> PurePosixPath:
        """Written last by a step's commit: the day's output of that step is complete."""
        return self.store.root / "_manifests" / self.iso / f"{step}.json"

    def dbt_manifest(self, step: str) -> PurePosixPath:
        """dbt's manifest of the day's build by `step`, published for the export (on any machine)."""
        return self.store.root / "_manifests" / self.iso / f"{step}.dbt-manifest.json"

    def staging_dir(self, step: str) -> Path:
        """Private work area of one step and day (files, batch files, run state)."""
        return self.data_dir / ".staging" / step / self.iso

    def begin_record(self, step: str) -> Path:
        """Written by a step's begin task: run id, start time, what the step must produce."""
        return self.staging_dir(step) / "_begin.json"

    def load_intent(self, step: str) -> Path:
        """Written by load's begin task: the files tap-parquet-manifest reads and the rows expected."""
        return self.staging_dir(step) / "intent.json"

    def output_dir(self) -> PurePosixPath:
        return self.store.root / "output" / self.iso

    def output_file(self, name: str) -> PurePosixPath:
        return self.output_dir() / name

    def lock_file(self, name: str) -> Path:
        return self.data_dir / ".locks" / f"{name}-{self.iso}.lock"
