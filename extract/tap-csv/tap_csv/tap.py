"""tap-csv: one stream, order_details, typed by the declared contract in reader.py."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from singer_sdk import Stream, Tap
from singer_sdk import typing as th

from tap_csv.reader import KEY, read_order_details


class OrderDetailsStream(Stream):
    name = "order_details"
    primary_keys = KEY
    schema = th.PropertiesList(
        th.Property("order_id", th.IntegerType, required=True),
        th.Property("product_id", th.IntegerType, required=True),
        th.Property("unit_price", th.NumberType, required=True),
        th.Property("quantity", th.IntegerType, required=True),
        th.Property("discount", th.NumberType, required=True),
    ).to_dict()

    def get_records(self, context: dict | None) -> Iterable[dict[str, Any]]:
        # Validate the whole file before the first record leaves: a bad row means no output.
        table = read_order_details(Path(self.config["file_path"]))
        for batch in table.to_batches(max_chunksize=10_000):
            yield from batch.to_pylist()


class TapCSV(Tap):
    name = "tap-csv"
    config_jsonschema = th.PropertiesList(
        th.Property("file_path", th.StringType, required=True, description="Path of order_details.csv"),
    ).to_dict()

    def discover_streams(self) -> list[Stream]:
        return [OrderDetailsStream(self)]
