"""Swap a loaded day into `raw` in one transaction, and clear what a failed load left.

begin creates the day's staging schema `raw_staging_<day>` with one table per partition
file, each column already of the type `raw` gives it (the source's own Postgres type,
recorded in the file) wherever ADBC's binary COPY can write that type directly
(varchar(n), numeric(p,s), timestamp(p)... take the text, numeric and timestamp it sends).
target-postgres-arrow ingests the day's rows there. The commit checks that every table
received exactly the rows the tap announced, then, in one transaction, for each table:

- converts the few columns staged as something else (uuid, jsonb, inet... arrive as text),
- adds `_day` and `_load_id` as constant columns (a metadata change, no row is rewritten),
- detaches and drops day D's old partition of the `raw` table (partitioned by `_day`),
- moves the staged table into the day's schema `raw_day_<day>` and attaches it as day D.

No row is copied: the staged table becomes the day. Readers see the old day or the new
one, never a mix. A `raw` table that is not partitioned (created before this version)
keeps working: its day is replaced by DELETE and INSERT ... SELECT in the same transaction.
Tables an earlier load of D had and this one lacks lose their day D.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
from psycopg import sql

from northwind_elt.core import settings, text
from northwind_elt.core.day import configured_lake
from northwind_elt.core.errors import PipelineError

RAW_SCHEMA = "raw"
_TYPMOD = re.compile(r"\(\d+(,\s*-?\d+)?\)")
# Types ADBC's binary COPY of an Arrow string can fill: they share text's wire format.
_TEXT_FAMILY = {"text", "character varying", "character", "bpchar"}
# A type as format_type() prints it: base, typmod numbers, zone ("timestamp(3) with time zone").
_TYPE_PARTS = re.compile(r"(?P<base>[^(]+?)(?:\((?P<a>\d+)(?:,\s*(?P<b>-?\d+))?\))?(?P<zone> with(?:out)? time zone)?")
_INTEGERS = ["smallint", "integer", "bigint"]
# Added by the load to every row; a source table with a column of that name cannot be loaded.
CONSTANT_COLUMNS = ("_day", "_load_id")
# The Postgres type of a column, as format_type() prints it: checked before it is
# spliced into SQL, since it is read from a file.
_PG_TYPE = re.compile(r'"?[A-Za-z_][A-Za-z0-9_ ]*"?(\(\d+(,\s*-?\d+)?\))?( with(out)? time zone)?(\[\])*')


def staging_schema(day: dt.date) -> str:
    """The day's own staging schema: target-postgres-arrow ingests there, commit drops it."""
    return f"raw_staging_{day.isoformat()}"


def day_schema(day: dt.date) -> str:
    """Where the partitions of day D of the raw tables live."""
    return f"raw_day_{day.isoformat()}"


def _columns(conn: psycopg.Connection, schema: str, table: str) -> dict[str, str]:
    """A table's columns, in order, with their types as format_type() prints them; {} if it does not exist."""
    rows = conn.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a"
        " JOIN pg_catalog.pg_class c ON c.oid = a.attrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        [schema, table],
    ).fetchall()
    return dict(rows)


def _relkind(conn: psycopg.Connection, schema: str, table: str) -> str | None:
    """'p' for a partitioned table, 'r' for a plain one, None if there is none."""
    row = conn.execute(
        "SELECT c.relkind FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = %s",
        [schema, table],
    ).fetchone()
    return row[0] if row else None


def _partition_of_day(conn: psycopg.Connection, table: str, day: dt.date) -> sql.Composable | None:
    """Day D's partition of raw.<table>, if one is attached."""
    row = conn.execute(
        "SELECT n.nspname, c.relname FROM pg_catalog.pg_inherits i"
        " JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " JOIN pg_catalog.pg_class p ON p.oid = i.inhparent JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace"
        " WHERE pn.nspname = %s AND p.relname = %s AND pg_get_expr(c.relpartbound, c.oid) = %s",
        [RAW_SCHEMA, table, f"FOR VALUES IN ('{day.isoformat()}')"],
    ).fetchone()
    return sql.Identifier(*row) if row else None


def _day_tables(conn: psycopg.Connection, schema: str) -> list[str]:
    """Tables of `schema` that hold days (have a _day column)."""
    rows = conn.execute(
        "SELECT table_name FROM information_schema.columns WHERE table_schema = %s AND column_name = '_day'"
        " ORDER BY table_name",
        [schema],
    ).fetchall()
    return [r[0] for r in rows]


def _lock_day(conn: psycopg.Connection, day: dt.date) -> None:
    # One load of a day at a time; other days proceed in parallel.
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('northwind-load'), %s)", [day.toordinal()])


def arrow_to_pg(kind: pa.DataType) -> str:
    """The Postgres type for an Arrow type, for columns whose file does not say (e.g. from a CSV)."""
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return arrow_to_pg(kind.value_type) + "[]"
    if pa.types.is_decimal(kind):
        return f"numeric({kind.precision},{kind.scale})"
    if pa.types.is_timestamp(kind):
        return "timestamp with time zone" if kind.tz else "timestamp without time zone"
    for test, name in (
        (pa.types.is_int8, "smallint"),
        (pa.types.is_int16, "smallint"),
        (pa.types.is_int32, "integer"),
        (pa.types.is_int64, "bigint"),
        (pa.types.is_float32, "real"),
        (pa.types.is_float64, "double precision"),
        (pa.types.is_boolean, "boolean"),
        (pa.types.is_date32, "date"),
        (pa.types.is_time64, "time without time zone"),
        (pa.types.is_binary, "bytea"),
        (pa.types.is_large_binary, "bytea"),
        (pa.types.is_string, "text"),
        (pa.types.is_large_string, "text"),
    ):
        if test(kind):
            return name
    raise ValueError(f"no Postgres type for Arrow type {kind}")


def read_schema(location: Path | str) -> pa.Schema:
    """The Arrow schema of a partition file: a local path, or an `s3://` URL in the lake."""
    if str(location).startswith("s3://"):
        lake = configured_lake()
        with lake.open_input(lake.path_of(str(location))) as handle:
            return pq.read_schema(handle)
    return pq.read_schema(location)


def file_columns(path: Path | str) -> tuple[dict[str, str], list[str]]:
    """Each column of a partition file with the Postgres type `raw` gives it (the source's own, if
    recorded), and every reason the file cannot be loaded (one per column)."""
    types, problems = {}, []
    for field in read_schema(path):
        declared = (field.metadata or {}).get(b"pg_type")
        pg_type = declared.decode() if declared else arrow_to_pg(field.type)
        if not _PG_TYPE.fullmatch(pg_type):
            problems.append(f"column {field.name!r} declares an unusable type {pg_type!r}")
        elif field.name in CONSTANT_COLUMNS:
            problems.append(f"column {field.name!r}: the load adds a column of that name to every row")
        types[field.name] = pg_type
    return types, problems


def _unloadable(step: str, day: dt.date, problems: dict[str, tuple[Path | str, list[str]]]) -> PipelineError:
    """One error naming every table of the day that cannot be loaded, each with all its problems."""
    listed = "; ".join(
        f"{path}: table {table!r}: {', '.join(found)}" for table, (path, found) in sorted(problems.items())
    )
    return PipelineError(
        step,
        day,
        f"{text.plural(len(problems), 'table')} of the day cannot be loaded: {listed}",
        fix="rename the columns or leave the tables out of the extract that brings them in",
    )


def column_types(path: Path | str, step: str, day: dt.date, table: str) -> dict[str, str]:
    """`file_columns`' types, or PipelineError naming every problem of the file."""
    types, problems = file_columns(path)
    if problems:
        raise _unloadable(step, day, {table: (path, problems)})
    return types


def holds(raw: str, file: str) -> bool:
    """Whether a raw column of type `raw` takes every value of type `file` unchanged (equal, or wider)."""
    if raw == file:
        return True
    if raw.endswith("[]") or file.endswith("[]"):
        return False
    r, f = _TYPE_PARTS.fullmatch(raw), _TYPE_PARTS.fullmatch(file)
    if r is None or f is None:
        return False
    if r["base"] in _INTEGERS and f["base"] in _INTEGERS:
        return _INTEGERS.index(r["base"]) >= _INTEGERS.index(f["base"])
    if r["base"] == "text":
        return f["base"] == "character varying"  # not char(n): text would drop its padding
    if r["base"] != f["base"] or r["zone"] != f["zone"]:
        return False
    if r["base"] == "numeric":
        if r["a"] is None:
            return True
        if f["a"] is None:
            return False
        r_scale, f_scale = int(r["b"] or 0), int(f["b"] or 0)
        return r_scale >= f_scale and int(r["a"]) - r_scale >= int(f["a"]) - f_scale
    if r["base"] == "character varying":
        return r["a"] is None or (f["a"] is not None and int(r["a"]) >= int(f["a"]))
    if r["base"] in ("timestamp", "time"):  # fractional digits, 6 when unstated
        return int(r["a"] or 6) >= int(f["a"] or 6)
    return False


def staged_type(final: str, arrow_type: pa.DataType) -> str:
    """The staging column's type: `final` where ADBC's binary COPY of the Arrow type fills it as is
    (same type, or one that differs by a typmod, or text into varchar/char), else the type ADBC
    would create, converted to `final` at commit."""
    sent = arrow_to_pg(arrow_type)
    if final == sent:
        return final
    if final.endswith("[]") or sent.endswith("[]"):
        return sent  # an array's binary form names its element type: it must match exactly
    base, sent_base = _TYPMOD.sub("", final), _TYPMOD.sub("", sent)
    if base == sent_base or (sent_base == "text" and base in _TEXT_FAMILY):
        return final
    return sent


def prepare_staging(target: settings.PgConn, step: str, day: dt.date, files: dict[str, Path | str]) -> None:
    """An empty staging schema for the day (whatever a failed attempt left is gone), with a table
    per partition file whose columns have raw's types where the bulk copy can fill them."""
    schema = staging_schema(day)
    # Every file first: a day that cannot be loaded names all its tables and touches nothing.
    described = {table: file_columns(path) for table, path in sorted(files.items())}
    if problems := {table: (files[table], found) for table, (_, found) in described.items() if found}:
        raise _unloadable(step, day, problems)
    with psycopg.connect(target.conninfo()) as conn:
        _lock_day(conn, day)
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        for table, path in sorted(files.items()):
            final = described[table][0]
            arrow = read_schema(path)
            columns = [
                sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(staged_type(kind, arrow.field(name).type)))
                for name, kind in final.items()
            ]
            conn.execute(
                sql.SQL("CREATE TABLE {} ({})").format(sql.Identifier(schema, table), sql.SQL(", ").join(columns))
            )


def _raw_columns(
    conn: psycopg.Connection, table: str, wanted: dict[str, str]
) -> tuple[dict[str, str], list[tuple[str, str, str]]]:
    """raw.<table>, created partitioned by day if missing, with every column of the day's file; and
    each column whose type changed as (column, raw's type, the file's type).

    A column the file has and raw lacks is added (a column added at the source flows through).
    A column raw has with a wider type (numeric(12,4) for numeric(10,2), bigint for integer...)
    takes the day's values unchanged; any other difference is a change the caller refuses:
    converting could change values."""
    raw = sql.Identifier(RAW_SCHEMA, table)
    if _relkind(conn, RAW_SCHEMA, table) is None:
        columns = [sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, t in wanted.items()]
        columns += [sql.SQL("_day date NOT NULL"), sql.SQL("_load_id text NOT NULL")]
        conn.execute(sql.SQL("CREATE TABLE {} ({}) PARTITION BY LIST (_day)").format(raw, sql.SQL(", ").join(columns)))
    have = _columns(conn, RAW_SCHEMA, table)
    changed = []
    for column, kind in wanted.items():
        if column not in have:
            conn.execute(sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(raw, sql.Identifier(column), sql.SQL(kind)))
        elif not holds(have[column], kind):
            changed.append((column, have[column], kind))
    return _columns(conn, RAW_SCHEMA, table), changed


def _changed_types(
    conn: psycopg.Connection, step: str, day: dt.date, changed: dict[str, list[tuple[str, str, str]]]
) -> PipelineError:
    """One error naming every column of every table whose type raw cannot hold unchanged."""
    found, widen = [], []
    for table, columns in sorted(changed.items()):
        where = sql.Identifier(RAW_SCHEMA, table).as_string(conn)
        for column, raw, file in columns:
            found.append(f"column {column!r} of {where} is {raw} but the day's file has {file}")
            widen.append(
                f"ALTER TABLE {where} ALTER COLUMN {sql.Identifier(column).as_string(conn)} "
                f"TYPE <a type holding {raw} and {file}>"
            )
    cause = "; ".join(found) + (
        ": the source changed the column's type"
        if len(found) == 1
        else f": the source changed {len(found)} columns' types"
    )
    tables = ", ".join(sql.Identifier(RAW_SCHEMA, t).as_string(conn) for t in sorted(changed))
    return PipelineError(
        step,
        day,
        cause,
        fix=f"widen {'the column' if len(found) == 1 else 'each column'} so that it holds both "
        f"({'; '.join(widen)}), or drop {tables} and reload {'its' if len(changed) == 1 else 'their'} days",
    )


def _prepare_partition(
    conn: psycopg.Connection, day: dt.date, table: str, load_id: str, staged: dict[str, str], raw: dict[str, str]
) -> None:
    """Give the staged table exactly raw's columns, the day's constant columns and the CHECK that
    lets ATTACH skip its scan. No lock on raw is taken: this runs before any partition moves."""
    staged_table = sql.Identifier(staging_schema(day), table)
    changes = [
        sql.SQL("ALTER COLUMN {0} TYPE {1} USING {0}::{1}").format(sql.Identifier(c), sql.SQL(raw[c]))
        for c, kind in staged.items()
        if kind != raw[c]
    ]
    # Columns raw has and this day lacks (dropped at the source) are null on this day.
    changes += [
        sql.SQL("ADD COLUMN {} {}").format(sql.Identifier(c), sql.SQL(kind))
        for c, kind in raw.items()
        if c not in staged and c not in CONSTANT_COLUMNS
    ]
    # Constant columns with a default are a catalog change: no row is rewritten.
    changes += [
        sql.SQL("ADD COLUMN _day date NOT NULL DEFAULT {}").format(sql.Literal(day)),
        sql.SQL("ADD COLUMN _load_id text NOT NULL DEFAULT {}").format(sql.Literal(load_id)),
        sql.SQL("ADD CONSTRAINT _day_of_partition CHECK (_day = {})").format(sql.Literal(day)),
    ]
    conn.execute(sql.SQL("ALTER TABLE {} {}").format(staged_table, sql.SQL(", ").join(changes)))
    conn.execute(
        sql.SQL("ALTER TABLE {} ALTER COLUMN _day DROP DEFAULT, ALTER COLUMN _load_id DROP DEFAULT").format(
            staged_table
        )
    )


def _attach_day(conn: psycopg.Connection, day: dt.date, table: str) -> None:
    """Make the prepared staged table day D's partition of raw.<table>, replacing the old one."""
    _drop_day_partition(conn, day, table)
    partition = sql.Identifier(day_schema(day), table)
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(day_schema(day))))
    # Not attached to raw (so not day D's): nothing of ours that anyone reads.
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(partition))
    conn.execute(
        sql.SQL("ALTER TABLE {} SET SCHEMA {}").format(
            sql.Identifier(staging_schema(day), table), sql.Identifier(day_schema(day))
        )
    )
    conn.execute(
        sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES IN ({})").format(
            sql.Identifier(RAW_SCHEMA, table), partition, sql.Literal(day)
        )
    )


def _drop_day_partition(conn: psycopg.Connection, day: dt.date, table: str) -> None:
    old = _partition_of_day(conn, table, day)
    if old is not None:
        conn.execute(sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(sql.Identifier(RAW_SCHEMA, table), old))
        conn.execute(sql.SQL("DROP TABLE {}").format(old))


def _copy_day(
    conn: psycopg.Connection, day: dt.date, table: str, load_id: str, staged: dict[str, str], raw: dict[str, str]
) -> None:
    """A raw table that is not partitioned: replace day D's rows by a copy of the staged ones."""
    target = sql.Identifier(RAW_SCHEMA, table)
    columns = [c for c in staged if c in raw]
    conn.execute(sql.SQL("DELETE FROM {} WHERE _day = %s").format(target), [day])
    conn.execute(
        sql.SQL("INSERT INTO {} ({}, _day, _load_id) SELECT {}, %s, %s FROM {}").format(
            target,
            sql.SQL(", ").join(map(sql.Identifier, columns)),
            sql.SQL(", ").join(sql.SQL("{}::{}").format(sql.Identifier(c), sql.SQL(raw[c])) for c in columns),
            sql.Identifier(staging_schema(day), table),
        ),
        [day, load_id],
    )


def swap_day(target: settings.PgConn, step: str, day: dt.date, intent: dict, attempts: int = 3) -> int:
    """Replace day D in raw with this load, every table in one transaction, then drop staging.

    Replacing a day detaches its old partition, which locks the raw table against readers until
    the transaction ends: a query reading two raw tables can deadlock with it. Postgres then
    rolls one of them back; if it is this swap, nothing changed, and it is tried again."""
    for _ in range(attempts - 1):
        try:
            return _swap_day_once(target, step, day, intent)
        except psycopg.errors.DeadlockDetected:
            continue
    try:
        return _swap_day_once(target, step, day, intent)
    except psycopg.errors.DeadlockDetected:
        raise PipelineError(
            step,
            day,
            f"swapping the day into {RAW_SCHEMA} deadlocked {attempts} times with queries reading it; nothing changed",
            fix=f"rerun when the queries reading {RAW_SCHEMA} (e.g. dbt runs of other days) are done",
        ) from None


def _swap_day_once(target: settings.PgConn, step: str, day: dt.date, intent: dict) -> int:
    load_id = intent["load_id"]
    files = {stream["name"]: stream["files"][0]["path"] for stream in intent["streams"]}
    staging_name = staging_schema(day)
    with psycopg.connect(target.conninfo()) as conn:
        # Partition bounds are matched as text (see _partition_of_day).
        conn.execute("SET LOCAL DateStyle = 'ISO, YMD'")
        _lock_day(conn, day)
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(RAW_SCHEMA)))
        # 1. Check every staged table and make it raw's shape. Readers of raw are not blocked.
        loaded: dict[str, tuple[dict[str, str], dict[str, str], bool]] = {}
        changed_types: dict[str, list[tuple[str, str, str]]] = {}
        for table, expected in sorted(intent["tables"].items()):
            staged = _columns(conn, staging_name, table)
            if not staged:
                raise PipelineError(step, day, f"table {staging_name}.{table} is missing; the target did not load it")
            got = conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(staging_name, table))
            ).fetchone()[0]
            if got != expected:
                raise PipelineError(
                    step,
                    day,
                    f"{staging_name}.{table} received {text.plural(got, 'row')}, expected {text.number(expected)}",
                )
            wanted = column_types(files[table], step, day, table)
            if extra := [c for c in staged if c not in wanted]:
                raise PipelineError(step, day, f"{staging_name}.{table} has columns the day's file lacks: {extra}")
            raw, changed = _raw_columns(conn, table, wanted)
            if changed:
                changed_types[table] = changed
            if changed_types:  # the swap is refused: name every changed column, prepare nothing more
                continue
            partitioned = _relkind(conn, RAW_SCHEMA, table) == "p"
            if partitioned:
                _prepare_partition(conn, day, table, load_id, staged, raw)
            loaded[table] = (staged, raw, partitioned)
        if changed_types:
            raise _changed_types(conn, step, day, changed_types)
        # 2. Swap: every raw table that holds days, in name order (the order other loads lock
        # them in). The day is exactly this load: a table an earlier load of D had, and this one
        # has not, loses its D rows.
        for table in sorted(set(loaded) | set(_day_tables(conn, RAW_SCHEMA))):
            if table in loaded:
                staged, raw, partitioned = loaded[table]
                if partitioned:
                    _attach_day(conn, day, table)
                else:
                    _copy_day(conn, day, table, load_id, staged, raw)
            elif _relkind(conn, RAW_SCHEMA, table) == "p":
                _drop_day_partition(conn, day, table)
            else:
                conn.execute(sql.SQL("DELETE FROM {} WHERE _day = %s").format(sql.Identifier(RAW_SCHEMA, table)), [day])
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {}._loaded_days (day date PRIMARY KEY, load_id text NOT NULL,"
                " loaded_at timestamptz NOT NULL, tables jsonb NOT NULL)"
            ).format(sql.Identifier(RAW_SCHEMA))
        )
        conn.execute(
            sql.SQL(
                "INSERT INTO {}._loaded_days VALUES (%s, %s, now(), %s) ON CONFLICT (day) DO UPDATE"
                " SET load_id = excluded.load_id, loaded_at = excluded.loaded_at, tables = excluded.tables"
            ).format(sql.Identifier(RAW_SCHEMA)),
            [day, load_id, json.dumps(intent["tables"])],
        )
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(staging_name)))
    return sum(intent["tables"].values())
