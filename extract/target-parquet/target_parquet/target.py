"""target-parquet: stage a day's streams as Parquet for the `publish` step to commit.

The target only ever writes into the step's private staging directory. It cannot tell
a finished tap from a crashed one (both just close stdin), so making files visible is
left to the job's next task, which runs only when the whole extract succeeded.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import IO, Any

from singer_sdk import typing as th
from singer_sdk.target_base import Target

from northwind_elt import ledger
from northwind_elt.day import DayLayout
from northwind_elt.files import atomic_write_json, parquet_rows
from northwind_elt.locks import AlreadyRunning, step_lock
from target_parquet.sinks import ParquetSink


class TargetParquet(Target):
    name = "target-parquet"
    default_sink_class = ParquetSink

    config_jsonschema = th.PropertiesList(
        th.Property("step", th.StringType, required=True, description="Pipeline step, e.g. extract-postgres"),
        th.Property(
            "stream_prefix_to_strip",
            th.StringType,
            default="public-",
            description="Prefix removed from stream names to get table names",
        ),
        th.Property("staging_dir", th.StringType, description="Set by the target from the day; not user-facing"),
    ).to_dict()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.layout = DayLayout.current()
        self.started_at = ledger.now()
        staging = self.layout.staging_dir(self.config["step"])
        self._config = {**self._config, "staging_dir": str(staging)}

    def process_endofpipe(self) -> None:
        super().process_endofpipe()  # drains and closes every sink: all files renamed
        staging = Path(self.config["staging_dir"])
        tables = {path.stem: parquet_rows(path) for path in sorted(staging.glob("*.parquet"))}
        atomic_write_json(
            self.layout.staged_marker(self.config["step"]),
            {
                "day": self.layout.iso,
                "step": self.config["step"],
                "started_at": self.started_at.isoformat(),
                "tables": tables,
            },
        )

    def listen(self, file_input: IO[str] | None = None) -> None:
        step, staging = self.config["step"], Path(self.config["staging_dir"])
        try:
            with step_lock(self.layout, step):
                # A rerun starts from a clean staging area: nothing of an earlier attempt survives.
                shutil.rmtree(staging, ignore_errors=True)
                staging.mkdir(parents=True)
                super().listen(file_input)
        except AlreadyRunning as err:
            sys.exit(f"ERROR: {err}")
        except BaseException as err:
            ledger.record(
                self.layout.day,
                step,
                "failed",
                started_at=self.started_at,
                error=f"target-parquet: {type(err).__name__}: {err}",
            )
            raise
