"""tap-parquet: one stream per table of the day, each row tagged with `_day` and `_load_id`.

Discovery runs the load gate, so the tap refuses to start for a day whose step-1 jobs
did not both complete. Before the first record it writes the load intent (load id and
expected rows per table) that the `publish-load` task checks the target against.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterable
from functools import cached_property
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from singer_sdk import Stream, Tap
from singer_sdk import typing as th
from singer_sdk.helpers._batch import BaseBatchFileEncoding, BatchConfig

from northwind_elt import ledger
from northwind_elt.day import LOAD_STEP, DayLayout
from northwind_elt.files import atomic_write_json
from northwind_elt.gate import GateRefused, Partition, verified_partitions
from northwind_elt.locks import AlreadyRunning, step_lock

BATCH_ROWS = 100_000


def jsonschema_of(field: pa.Field) -> dict[str, Any]:
    kind = field.type
    if pa.types.is_integer(kind):
        schema: dict[str, Any] = {"type": ["integer"]}
        if kind.bit_width <= 16:
            schema["x-sql-datatype"] = "smallint"
    elif pa.types.is_floating(kind):
        schema = {"type": ["number"]}
    elif pa.types.is_boolean(kind):
        schema = {"type": ["boolean"]}
    elif pa.types.is_date(kind):
        schema = {"type": ["string"], "format": "date"}
    elif pa.types.is_timestamp(kind):
        schema = {"type": ["string"], "format": "date-time"}
    elif pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        schema = {"type": ["string"], "contentEncoding": "base16"}
    else:
        schema = {"type": ["string"]}
    if field.nullable:
        schema["type"].append("null")
    return schema


class PartitionStream(Stream):
    """All rows of one table's partition for the day."""

    def __init__(self, tap: TapParquet, partition: Partition) -> None:
        self.partition = partition
        file_schema = pq.read_schema(partition.file)
        properties = {field.name: jsonschema_of(field) for field in file_schema}
        properties["_day"] = {"type": ["string"], "format": "date"}
        properties["_load_id"] = {"type": ["string"]}
        super().__init__(tap, schema={"type": "object", "properties": properties}, name=partition.table)

    def get_batches(
        self, batch_config: BatchConfig, context: dict | None = None
    ) -> Iterable[tuple[BaseBatchFileEncoding, list[str]]]:
        """Bulk path: the partition goes out as Parquet batch files, stamped in Arrow.

        No per-row Python on this side; target-postgres COPYs each batch. The files live in
        the day's load staging area, which publish-load removes.
        """
        tap: TapParquet = self._tap  # type: ignore[assignment]
        out_dir = tap.layout.staging_dir(LOAD_STEP) / "batches"
        out_dir.mkdir(parents=True, exist_ok=True)
        parquet = pq.ParquetFile(self.partition.file)
        batches = parquet.iter_batches(batch_size=BATCH_ROWS) if parquet.metadata.num_rows else [None]
        for index, batch in enumerate(batches):
            table = pa.Table.from_batches([batch]) if batch is not None else parquet.schema_arrow.empty_table()
            table = table.append_column("_day", pa.array([tap.layout.day] * table.num_rows, pa.date32()))
            table = table.append_column("_load_id", pa.array([tap.load_id] * table.num_rows, pa.string()))
            path = out_dir / f"{self.name}-{tap.load_id}-{index:05d}.parquet"
            pq.write_table(table, path)
            yield BaseBatchFileEncoding(format="parquet", compression="none"), [path.as_uri()]

    def get_records(self, context: dict | None) -> Iterable[dict[str, Any]]:
        tap: TapParquet = self._tap  # type: ignore[assignment]
        stamp = {"_day": tap.layout.iso, "_load_id": tap.load_id}
        parquet = pq.ParquetFile(self.partition.file)
        for batch in parquet.iter_batches(batch_size=10_000):
            for row in batch.to_pylist():
                row.update(stamp)
                yield row


class TapParquet(Tap):
    name = "tap-parquet"
    config_jsonschema = th.PropertiesList().to_dict()

    @cached_property
    def layout(self) -> DayLayout:
        return DayLayout.current()

    @cached_property
    def load_id(self) -> str:
        return uuid.uuid4().hex

    @cached_property
    def partitions(self) -> list[Partition]:
        try:
            return verified_partitions(self.layout)
        except GateRefused as err:
            ledger.record(self.layout.day, LOAD_STEP, "failed", error=str(err))
            sys.exit(f"ERROR: {err}")

    def discover_streams(self) -> list[Stream]:
        return [PartitionStream(self, partition) for partition in self.partitions]

    def sync_all(self) -> None:
        try:
            with step_lock(self.layout, LOAD_STEP):
                atomic_write_json(
                    self.layout.load_intent(),
                    {
                        "day": self.layout.iso,
                        "load_id": self.load_id,
                        "started_at": ledger.now().isoformat(),
                        "tables": {p.table: p.rows for p in self.partitions},
                    },
                )
                super().sync_all()
        except AlreadyRunning as err:
            sys.exit(f"ERROR: {err}")
