"""Turn ADBC record batches into the exact Arrow schema written to Parquet (vectorised, no per-row Python)."""

from __future__ import annotations

import datetime as dt
import decimal
import typing as t

import pyarrow as pa
import pyarrow.compute as pc

from tap_postgres_arrow.pgtypes import ColumnValueError

if t.TYPE_CHECKING:
    from tap_postgres_arrow.pgtypes import ColumnPlan


def _storage_type(typ: pa.DataType) -> pa.DataType:
    """Strip Arrow extension types (also inside lists) down to their storage."""
    if isinstance(typ, pa.ExtensionType):
        return _storage_type(typ.storage_type)
    if pa.types.is_list(typ) or pa.types.is_large_list(typ):
        item = typ.value_field.with_type(_storage_type(typ.value_type)).remove_metadata()
        return pa.large_list(item) if pa.types.is_large_list(typ) else pa.list_(item)
    return typ


def _storage(arr: pa.Array) -> pa.Array:
    if isinstance(arr, pa.ExtensionArray):
        return _storage(arr.storage)
    target = _storage_type(arr.type)
    return arr if target == arr.type else arr.view(target)


class BatchConverter:
    """Built from the plans and the reader's schema; converts each batch to ``self.schema``."""

    def __init__(self, plans: t.Sequence[ColumnPlan], source: pa.Schema, table: str) -> None:
        self.plans = list(plans)
        self.guards = [(p, g) for p in self.plans for g in p.guards]
        if len(source) != len(self.plans) + len(self.guards):
            msg = f"query returned {len(source)} columns, expected {len(self.plans) + len(self.guards)}"
            raise RuntimeError(msg)
        fields = []
        for plan, src in zip(self.plans, source, strict=False):
            if plan.decimal:
                precision, scale = plan.decimal
                typ = pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(precision, scale)
            else:
                typ = _storage_type(src.type)
            meta = {"pg_type": plan.pg_type, "pg_column": plan.column.name}
            fields.append(pa.field(plan.column.name, typ, nullable=True, metadata=meta))
        self.schema = pa.schema(fields, metadata={"pg_table": table})

    def convert(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        n = len(self.plans)
        for i, (plan, guard) in enumerate(self.guards):
            if pc.any(batch.column(n + i)).as_py():
                raise ColumnValueError(plan.column.name, plan.pg_type, guard.problem)
        arrays = []
        for plan, field, arr in zip(self.plans, self.schema, batch.columns[:n], strict=True):
            arr = _storage(arr)
            if plan.decimal:
                arr = self._to_decimal(arr, field.type, plan)
            arrays.append(arr)
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema)

    @staticmethod
    def _to_decimal(arr: pa.Array, typ: pa.DataType, plan: ColumnPlan) -> pa.Array:
        try:
            return pc.cast(arr, typ)  # safe cast: errors instead of rounding or overflowing
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            bad = next((v for v in arr.to_pylist() if v is not None and not _fits(v, typ)), None)
            what = f"value {bad!r} is not representable as {typ}" if bad is not None else str(exc)
            raise ColumnValueError(plan.column.name, plan.pg_type, what) from exc


def _fits(value: str, typ: pa.DataType) -> bool:
    try:
        pc.cast(pa.array([value]), typ)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True


def json_compatible(value: pa.Scalar) -> t.Any:
    """A replication-key value for Singer state: ISO text for temporal types, int/float/str otherwise.

    Datetimes use the SDK's own form (naive ones as UTC, microseconds) so state written by this
    path and by the parent's RECORD path compare alike.
    """
    from singer_sdk.helpers._typing import to_json_compatible

    try:
        py = value.as_py()
    except (ValueError, OverflowError):  # e.g. year > 9999: Arrow's own ISO-like rendering
        return pc.cast(value, pa.string()).as_py()
    if isinstance(py, dt.datetime):
        return to_json_compatible(py)
    if isinstance(py, (dt.date, dt.time)):
        return py.isoformat()
    if isinstance(py, decimal.Decimal):
        return str(py)
    if isinstance(py, bytes):
        return "\\x" + py.hex()
    return py
