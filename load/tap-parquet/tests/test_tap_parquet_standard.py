"""The Singer SDK's built-in tap tests, on a day published by the project's own publish step."""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from singer_sdk.testing import SuiteConfig, get_tap_test_class

from northwind_elt.day import DayLayout
from northwind_elt.publish import publish_extract
from tap_parquet.tap import TapParquet

DAY = "2024-01-15"


def _stage(layout: DayLayout, step: str, tables: dict[str, pa.Table]) -> None:
    staging = layout.staging_dir(step)
    staging.mkdir(parents=True)
    for name, table in tables.items():
        pq.write_table(table, staging / f"{name}.parquet")
    (staging / "_staged.json").write_text(
        json.dumps(
            {
                "day": layout.iso,
                "step": step,
                "started_at": dt.datetime.now(dt.UTC).isoformat(),
                "tables": {name: table.num_rows for name, table in tables.items()},
            }
        )
    )
    publish_extract(layout, step)


@pytest.fixture(autouse=True, scope="module")
def published_day():
    """The day this module published, in force while its tests run."""
    with pytest.MonkeyPatch.context() as env:
        for key, value in DAY_ENV.items():
            env.setenv(key, value)
        yield


def _publish_sample_day(data_dir: Path) -> None:
    layout = DayLayout(dt.date.fromisoformat(DAY), data_dir)
    _stage(
        layout,
        "extract-postgres",
        {
            "orders": pa.table(
                {
                    "order_id": pa.array([1, 2], pa.int64()),
                    "order_date": pa.array([dt.date(1996, 7, 4), None], pa.date32()),
                    "picture": pa.array([b"\x00\x01", b""], pa.binary()),
                }
            ),
            "empty": pa.table({"id": pa.array([], pa.int64())}),
        },
    )
    _stage(layout, "extract-csv", {"order_details": pa.table({"order_id": [1], "unit_price": [9.8]})})


# The SDK's test class discovers streams at collection time, so the day must exist now.
DAY_ENV = {"NW_DATA_DIR": tempfile.mkdtemp(prefix="tap-parquet-test-"), "RUN_DATE": DAY}
os.environ.update(DAY_ENV)
_publish_sample_day(Path(DAY_ENV["NW_DATA_DIR"]))
TestTapParquet = get_tap_test_class(
    TapParquet, config={}, suite_config=SuiteConfig(ignore_no_records_for_streams=["empty"])
)
