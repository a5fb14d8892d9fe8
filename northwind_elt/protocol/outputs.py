"""Every pipeline's export, driven by dbt: the models a pipeline tags `export`, written as their YAML asks.

dbt's manifest (written by the pipeline's dbt build) holds all there is to know:
- which models: those tagged `export` and the pipeline's dbt tag;
- which columns, in which order: the model's contract (`columns` with a `data_type` each,
  `contract: {enforced: true}`), less the columns whose meta says `export: false`, each
  written under the name its meta gives (`export: {as: day}`) or its own;
- which rows and files: the model's `meta.export`:

    rows: {_day: day}                  the unit's rows: column -> unit field (day; year, month)
    order_by: [order_id, product_id]   the row order ("column desc" too); default every written column
    refuse_empty: true                 no row for the unit fails the export
    reported_rows: count               what the export reports (the ledger's rows):
                                       the rows, or {sum: column}; default the rows of every model
    write_order: 1                     models are written in (write_order, name) order
    files:
      - path: orders_with_details.csv  under the export root; {field}: a unit field or
                                       a one_file_per column's value
        format: csv                    csv: COPY's CSV with a header; json_lines: "[", one object
                                       per line, "]"; json_agg: Postgres's json_agg and a newline;
                                       json_object: {"key":value,...} compact, no newline
        order_by: [...]                this file's row order, if not the model's
        one_file_per: [column]         one file per value of these columns
        key: country                   json_object: {"<key>":<value>,...}
        value: people
        newest_day_copy: summary_output.json   (by day) also here, under the data directory,
                                       while no later day has this file

Postgres renders every value in its canonical text form (a real 9.8 prints as 9.8, where a
Python float round trip would print 9.800000190734863), an ORDER BY makes the files
byte-identical across reruns, and every file of one export is read in one snapshot.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass, field
from pathlib import Path, PurePath, PurePosixPath
from typing import Any

import psycopg
from psycopg import sql

from northwind_elt.core import settings
from northwind_elt.core.day import DayLayout, UnsafeName, path_component
from northwind_elt.core.errors import PipelineError
from northwind_elt.core.files import read_json, write_whole
from northwind_elt.core.lake import Lake
from northwind_elt.core.text import plural
from northwind_elt.protocol.definition import TRANSFORM, Pipeline

EXPORT_TAG = "export"
CSV, JSON_LINES, JSON_AGG, JSON_OBJECT = "csv", "json_lines", "json_agg", "json_object"
FORMATS = (CSV, JSON_LINES, JSON_AGG, JSON_OBJECT)
_MODEL_KEYS = {"rows", "order_by", "refuse_empty", "reported_rows", "write_order", "files"}
_FILE_KEYS = {"path", "format", "order_by", "one_file_per", "key", "value", "newest_day_copy"}
# Aliases of the exported relation and of one written row in the generated SQL.
_TABLE, _ROW = sql.Identifier("_export_rows"), sql.Identifier("_export_row")


class ExportError(ValueError):
    """An export cannot be written: a manifest, a model's YAML or its rows. Nothing was written."""

    def __init__(self, cause: str, fix: str | None = None) -> None:
        super().__init__(cause)
        self.cause = cause
        self.fix = fix


@dataclass(frozen=True)
class Column:
    name: str  # in the model
    written_as: str  # in the files' header and keys


@dataclass(frozen=True)
class OrderKey:
    column: str
    descending: bool = False


@dataclass(frozen=True)
class FileSpec:
    path: str
    format: str
    order_by: tuple[OrderKey, ...]
    one_file_per: tuple[str, ...] = ()
    key: str | None = None
    value: str | None = None
    newest_day_copy: str | None = None


@dataclass(frozen=True)
class ModelExport:
    """One model to export, as its contract and `meta.export` in dbt's manifest describe it."""

    name: str
    schema: str
    relation: str
    columns: tuple[Column, ...]
    rows: tuple[tuple[str, str], ...]  # (column, unit field)
    files: tuple[FileSpec, ...]
    refuse_empty: bool = False
    reported_rows: str | tuple[str, str] | None = None  # "count" or ("sum", column)
    write_order: int = 0

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.relation}"


@dataclass(frozen=True)
class RenderedFile:
    model: ModelExport
    spec: FileSpec
    path: PurePath  # under the export root (a local path, or a path in the lake)
    data: bytes
    rows: int
    group: dict[str, str] = field(default_factory=dict)  # one_file_per column -> value (text)


@dataclass(frozen=True)
class Rendered:
    files: list[RenderedFile]
    reported_rows: int


# -- dbt's manifest ----------------------------------------------------------------------------


def manifest_path(target_path: str) -> Path:
    from northwind_elt.protocol.dbt import target_dir

    return target_dir(target_path) / "manifest.json"


def publish_manifest(target_path: str, lake: Lake, published: PurePosixPath) -> None:
    """The manifest of a build, where the export reads it: on another machine too (a worker exports
    what another worker built, and the export then reads the contracts that build enforced)."""
    lake.write_bytes(published, manifest_path(target_path).read_bytes())


def read_manifest(target_path: str, lake: Lake | None = None, published: PurePosixPath | None = None) -> dict:
    """The build's published manifest if there is one, else the one dbt left in this working copy."""
    if lake is not None and published is not None and (data := lake.read_bytes(published)) is not None:
        return json.loads(data)
    path = manifest_path(target_path)
    if not path.exists():
        raise ExportError(f"dbt's manifest {path} is missing", "the pipeline's dbt build writes it: run it first")
    return read_json(path)


def _meta(entry: dict) -> dict:
    """`config.meta`, where dbt 1.10+ keeps it (top-level `meta` before that)."""
    return (entry.get("config") or {}).get("meta") or entry.get("meta") or {}


def _order_keys(model: str, where: str, entries: Any, known: set[str]) -> tuple[OrderKey, ...]:
    if not isinstance(entries, list) or not entries:
        raise ExportError(f"model {model}: {where} must be a list of columns")
    keys = []
    for entry in entries:
        words = str(entry).split()
        if len(words) not in (1, 2) or (len(words) == 2 and words[1].lower() not in ("asc", "desc")):
            raise ExportError(f"model {model}: {where} entry {entry!r} is not 'column' or 'column asc|desc'")
        if words[0] not in known:
            raise ExportError(f"model {model}: {where} names {words[0]!r}, not a column of its contract")
        keys.append(OrderKey(words[0], len(words) == 2 and words[1].lower() == "desc"))
    return tuple(keys)


def _relative_path(model: str, where: str, value: Any) -> str:
    path = PurePosixPath(str(value))
    if not str(value) or path.is_absolute() or ".." in path.parts:
        raise ExportError(f"model {model}: {where} {value!r} must be a relative path without '..'")
    return str(value)


def _model_export(node: dict) -> ModelExport:
    name = node["name"]
    spec = _meta(node).get("export")
    if not isinstance(spec, dict) or not spec.get("files"):
        raise ExportError(
            f"model {name} is tagged {EXPORT_TAG} but its meta declares no export files",
            "declare them under config.meta.export in the model's YAML (see northwind_elt/protocol/outputs.py)",
        )
    if unknown := sorted(set(spec) - _MODEL_KEYS):
        raise ExportError(
            f"model {name}: meta.export has {plural(len(unknown), 'unknown key')} {unknown}; "
            f"known: {sorted(_MODEL_KEYS)}"
        )
    contract = node.get("columns") or {}
    if not contract:
        raise ExportError(
            f"model {name} declares no columns: its export writes the columns of its contract",
            "list every column with its data_type in the model's YAML (contract: {enforced: true})",
        )
    if untyped := [c for c, entry in contract.items() if not entry.get("data_type")]:
        raise ExportError(
            f"model {name}: {plural(len(untyped), 'column')} {untyped} {'has' if len(untyped) == 1 else 'have'} "
            "no data_type in the model's YAML (its contract)"
        )
    known = set(contract)
    columns = []
    for column, entry in contract.items():
        flag = _meta(entry).get("export", True)
        if flag is False:
            continue
        if flag is True:
            columns.append(Column(column, column))
        elif isinstance(flag, dict) and set(flag) == {"as"} and flag["as"]:
            columns.append(Column(column, str(flag["as"])))
        else:
            raise ExportError(f"model {name}: column {column}'s meta.export must be false or {{as: name}}")
    if not columns:
        raise ExportError(f"model {name}: every column of its contract is marked export: false")
    rows = spec.get("rows") or {}
    if not isinstance(rows, dict) or any(column not in known for column in rows):
        raise ExportError(f"model {name}: meta.export.rows must map columns of its contract to unit fields")
    default_order = (
        _order_keys(name, "meta.export.order_by", spec["order_by"], known)
        if "order_by" in spec
        else tuple(OrderKey(c.name) for c in columns)
    )
    files = []
    for index, entry in enumerate(spec["files"]):
        where = f"meta.export.files[{index}]"
        if not isinstance(entry, dict):
            raise ExportError(f"model {name}: {where} must be a mapping with path and format")
        if unknown := sorted(set(entry) - _FILE_KEYS):
            raise ExportError(
                f"model {name}: {where} has {plural(len(unknown), 'unknown key')} {unknown}; "
                f"known: {sorted(_FILE_KEYS)}"
            )
        if entry.get("format") not in FORMATS:
            raise ExportError(
                f"model {name}: {where}.format {entry.get('format')!r} is not one of {', '.join(FORMATS)}"
            )
        one_file_per = tuple(entry.get("one_file_per") or ())
        if any(column not in known for column in one_file_per):
            raise ExportError(f"model {name}: {where}.one_file_per names a column not in its contract")
        key, value = entry.get("key"), entry.get("value")
        if entry["format"] == JSON_OBJECT and (key not in known or value not in known):
            raise ExportError(f"model {name}: {where} (json_object) needs key and value, columns of its contract")
        files.append(
            FileSpec(
                path=_relative_path(name, f"{where}.path", entry.get("path", "")),
                format=entry["format"],
                order_by=(
                    _order_keys(name, f"{where}.order_by", entry["order_by"], known)
                    if "order_by" in entry
                    else default_order
                ),
                one_file_per=one_file_per,
                key=key,
                value=value,
                newest_day_copy=(
                    _relative_path(name, f"{where}.newest_day_copy", entry["newest_day_copy"])
                    if entry.get("newest_day_copy")
                    else None
                ),
            )
        )
    reported = spec.get("reported_rows")
    if isinstance(reported, dict) and set(reported) == {"sum"} and reported["sum"] in known:
        reported = ("sum", reported["sum"])
    elif reported not in (None, "count"):
        raise ExportError(f"model {name}: meta.export.reported_rows must be count or {{sum: column}}")
    return ModelExport(
        name=name,
        schema=node["schema"],
        relation=node.get("alias") or name,
        columns=tuple(columns),
        rows=tuple((column, str(unit_field)) for column, unit_field in rows.items()),
        files=tuple(files),
        refuse_empty=bool(spec.get("refuse_empty", False)),
        reported_rows=reported,
        write_order=int(spec.get("write_order", 0)),
    )


def exported_models(manifest: dict, tag: str) -> list[ModelExport]:
    """The models tagged `export` and `tag`, in the order they are written."""
    nodes = [
        node
        for node in manifest.get("nodes", {}).values()
        if node.get("resource_type") == "model" and {EXPORT_TAG, tag} <= set(node.get("tags", []))
    ]
    if not nodes:
        raise ExportError(
            f"dbt's manifest lists no model tagged {EXPORT_TAG} and {tag}",
            f"tag the models to export with {EXPORT_TAG} (and {tag}) and rebuild them",
        )
    return sorted((_model_export(node) for node in nodes), key=lambda m: (m.write_order, m.name))


# -- rendering, by Postgres ------------------------------------------------------------------


def copy_csv(conn: psycopg.Connection, query: sql.Composable) -> bytes:
    """A query's rows as CSV with a header, rendered by Postgres itself."""
    out = bytearray()
    with conn.cursor().copy(sql.SQL("COPY ({}) TO STDOUT WITH (FORMAT csv, HEADER)").format(query)) as copy:
        for block in copy:
            out += block
    return bytes(out)


def describe_unit(unit: dict[str, Any]) -> str:
    return ", ".join(f"{name} {value}" for name, value in unit.items())


class _Query:
    """The SQL of one file: the model's rows of the unit (and group), its columns, its order."""

    def __init__(self, model: ModelExport, unit: dict[str, Any], group: dict[str, Any]) -> None:
        def col(name: str) -> sql.Composable:
            return sql.SQL("{}.{}").format(_TABLE, sql.Identifier(name))

        self.col = col
        try:
            equal = [(column, unit[unit_field]) for column, unit_field in model.rows] + list(group.items())
        except KeyError as err:
            raise ExportError(
                f"model {model.name}: meta.export.rows names unit field {err}, not one of {list(unit)}"
            ) from None
        conditions = [sql.SQL("{} = {}").format(col(column), sql.Literal(value)) for column, value in equal]
        self.source = sql.SQL("FROM {} AS {}").format(sql.Identifier(model.schema, model.relation), _TABLE)
        self.where = sql.SQL(" WHERE {}").format(sql.SQL(" AND ").join(conditions)) if conditions else sql.SQL("")
        self.select = sql.SQL(", ").join(
            sql.SQL("{} AS {}").format(col(c.name), sql.Identifier(c.written_as)) for c in model.columns
        )

    def order(self, keys: tuple[OrderKey, ...]) -> sql.Composable:
        return sql.SQL(", ").join(
            sql.SQL("{} DESC" if key.descending else "{}").format(self.col(key.column)) for key in keys
        )

    def rows(self, keys: tuple[OrderKey, ...]) -> sql.Composable:
        return sql.SQL("SELECT {} {}{} ORDER BY {}").format(self.select, self.source, self.where, self.order(keys))

    def per_row(self, aggregate: str, keys: tuple[OrderKey, ...]) -> sql.Composable:
        """`aggregate` ({row}, {order}) over the written rows, each a record of the written columns."""
        return sql.SQL("SELECT " + aggregate + " {} CROSS JOIN LATERAL (SELECT {}) AS {}{}").format(
            self.source, self.select, _ROW, self.where, row=_ROW, order=self.order(keys)
        )

    def scalar(self, expression: sql.Composable) -> sql.Composable:
        return sql.SQL("SELECT {} {}{}").format(expression, self.source, self.where)


def _render(conn: psycopg.Connection, model: ModelExport, spec: FileSpec, query: _Query, rows: int) -> bytes:
    if spec.format == CSV:
        return copy_csv(conn, query.rows(spec.order_by))
    if spec.format == JSON_LINES:
        # [ and ] on lines of their own, one object per line between them.
        text = conn.execute(
            query.per_row("string_agg(row_to_json({row})::text, E',\\n' ORDER BY {order})", spec.order_by)
        ).fetchone()[0]
        return f"[\n{text}\n]\n".encode() if rows else b"[\n]\n"
    if spec.format == JSON_AGG:
        text = conn.execute(query.per_row("coalesce(json_agg({row} ORDER BY {order}), '[]')::text", spec.order_by))
        return (text.fetchone()[0] + "\n").encode()
    # JSON_OBJECT: compact, UTF-8 not escaped, no trailing newline; values rendered by Postgres.
    pairs = conn.execute(
        sql.SQL("SELECT {}::text, to_json({})::text {}{} ORDER BY {}").format(
            query.col(spec.key), query.col(spec.value), query.source, query.where, query.order(spec.order_by)
        )
    ).fetchall()
    if any(key is None for key, _ in pairs):
        raise ExportError(f"model {model.name}: a row has no {spec.key}, the key of {spec.path}")
    members = dict(pairs)
    return ("{" + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{v}" for k, v in members.items()) + "}").encode()


def _fill(template: str, values: dict[str, str], model: ModelExport) -> str:
    names = {name for _, name, _, _ in string.Formatter().parse(template) if name}
    if missing := sorted(names - set(values)):
        raise ExportError(f"model {model.name}: path {template!r} names {missing}, not one of {sorted(values)}")
    return template.format_map(values)


def _groups(conn: psycopg.Connection, model: ModelExport, spec: FileSpec, unit: dict[str, Any]) -> list[dict]:
    """The distinct values (typed, text) of the file's one_file_per columns among the unit's rows, in their order."""
    if not spec.one_file_per:
        return [{}]
    query = _Query(model, unit, {})
    columns = sql.SQL(", ").join(query.col(c) for c in spec.one_file_per)
    texts = sql.SQL(", ").join(sql.SQL("{}::text").format(query.col(c)) for c in spec.one_file_per)
    found = conn.execute(
        sql.SQL("SELECT {}, {} {}{} GROUP BY {} ORDER BY {}").format(
            columns, texts, query.source, query.where, columns, columns
        )
    ).fetchall()
    width = len(spec.one_file_per)
    return [{column: (row[i], row[width + i]) for i, column in enumerate(spec.one_file_per)} for row in found]


def render(conn: psycopg.Connection, models: list[ModelExport], root: PurePath, unit: dict[str, Any]) -> Rendered:
    """Every file of every model for the unit, in memory; raises ExportError before anything is written.

    The caller holds one snapshot (a repeatable read transaction) for all of them.
    """
    conn.execute("SET extra_float_digits = 1")  # the shortest text that reads back exactly, whatever the role says
    unit_text = {name: str(value) for name, value in unit.items()}
    files: list[RenderedFile] = []
    reported, total = 0, 0
    declared = any(model.reported_rows for model in models)
    for model in models:
        try:
            whole = _Query(model, unit, {})
            rows = conn.execute(whole.scalar(sql.SQL("count(*)"))).fetchone()[0]
            if rows == 0 and model.refuse_empty:
                raise ExportError(
                    f"{model.qualified} has no rows for {describe_unit(unit)}",
                    "check the pipeline's dbt build of that unit",
                )
            total += rows
            if model.reported_rows == "count":
                reported += rows
            elif model.reported_rows:
                summed = whole.scalar(sql.SQL("coalesce(sum({}), 0)").format(whole.col(model.reported_rows[1])))
                reported += int(conn.execute(summed).fetchone()[0])
            for spec in model.files:
                for group in _groups(conn, model, spec, unit):
                    try:
                        group_text = {column: path_component(text) for column, (_, text) in group.items()}
                    except (UnsafeName, TypeError):
                        raise ExportError(
                            f"model {model.name}: a value of {list(group)} cannot name a file: {group}"
                        ) from None
                    query = _Query(model, unit, {column: typed for column, (typed, _) in group.items()})
                    count = conn.execute(query.scalar(sql.SQL("count(*)"))).fetchone()[0] if group else rows
                    path = root / _fill(spec.path, {**unit_text, **group_text}, model)
                    files.append(
                        RenderedFile(model, spec, path, _render(conn, model, spec, query, count), count, group_text)
                    )
        except psycopg.errors.UndefinedTable:
            raise ExportError(
                f"{model.qualified} does not exist", "run the pipeline's dbt build, which creates it"
            ) from None
        except psycopg.errors.UndefinedColumn as err:
            raise ExportError(
                f"{model.qualified} lacks a column of its contract in dbt's manifest ({err.diag.message_primary})",
                "rebuild the model with the pipeline's dbt build (a full refresh if the table predates the contract)",
            ) from None
    return Rendered(files, reported if declared else total)


def write(rendered: Rendered, lake: Lake | None = None) -> None:
    """Each file whole, in place of an earlier render's (a rename locally, one PUT on S3)."""
    for file in rendered.files:
        if lake is None:
            write_whole(file.path, file.data)
        else:
            lake.write_bytes(file.path, file.data)


# -- the day protocol's export step -------------------------------------------------------------


def _transform_step(pipeline: Pipeline, step: str) -> str:
    """The step to rerun when the models are missing or wrong: the dbt build the export needs."""
    needs = [pipeline.step(name) for name in pipeline.step(step).needs]
    return next((s.name for s in needs if s.kind == TRANSFORM), step)


def export_day(pipeline: Pipeline, step: str, layout: DayLayout, target: settings.PgConn) -> int:
    """Write the day's files of every model the pipeline exports; returns the rows to record."""
    rerun = _transform_step(pipeline, step)
    try:
        manifest = read_manifest(pipeline.dbt_target_path, layout.store, layout.dbt_manifest(rerun))
        models = exported_models(manifest, pipeline.dbt_tag)
        with psycopg.connect(target.conninfo()) as conn:
            # One snapshot for every file of the day, even if dbt rebuilds a model meanwhile.
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            rendered = render(conn, models, layout.output_dir(), {"day": layout.day})
    except ExportError as err:
        raise PipelineError(step, layout.day, err.cause, err.fix, rerun_from=rerun) from None
    lake = layout.store
    write(rendered, lake)
    # A file with a fixed copy holds the newest day's: a backfill of an older day writes its dated file only.
    output = lake.root / "output"
    for file in rendered.files:
        if file.spec.newest_day_copy:
            relative = file.path.relative_to(layout.output_dir()).as_posix()
            days = [p.relative_to(output).parts[0] for p in lake.glob(output / "*" / relative)]
            if layout.iso >= max(days, default=layout.iso):
                lake.write_bytes(lake.root / file.spec.newest_day_copy, file.data)
    return rendered.reported_rows
