"""Benchmark the real jobs against reference implementations on the same data.

    .venv/bin/python scripts/benchmark.py                        # N=928: 2.77 M source rows, 2.0 M CSV rows
    .venv/bin/python scripts/benchmark.py --scale small          # N=100 (a quick check)
    .venv/bin/python scripts/benchmark.py --scale small,default  # both, plus the x10-rows memory target
    .venv/bin/python scripts/benchmark.py --only extract,csv --rounds 1 --keep

Needs the embedded server (`.venv/bin/nw db up`) and the references: `make bench-install`
installs the `bench` extra from uv.lock into .venv-bench, and the stock tap-postgres and
target-postgres of the benchmark's own Meltano project (scripts/bench/meltano.yml) into
.venv-bench/meltano; `make bench BENCH_ARGS="..."` does both, then runs this script.

Workload: Northwind `orders` (830 rows, from the seeded `northwind` database) and
`order_details` (2,155 rows, data/order_details.csv) replicated N times with SQL in a
scratch source database (keys offset by k*100000, so order_id is widened to integer).
The replicated order_details table is named `order_lines` there: the load gate refuses a
table that two extract steps produce, and extract-csv produces `order_details`.
and an order_details CSV of the same N copies (2.0 M rows at N=928).

Groups (--only): `extract` (extract-postgres job vs psycopg COPY->pyarrow, ADBC, dlt
sql_database/connectorx -> Parquet), `csv` (extract-csv job vs pyarrow's bare CSV read +
Parquet write), `load` (load job vs psycopg Parquet->CSV->COPY, ADBC adbc_ingest, dlt
parquet/ADBC, csv/COPY and insert_values, all loading the Parquet files the extract jobs
published), `day` (`nw run daily` of the real Northwind day vs a stock `meltano run
tap-postgres target-postgres` of the same 13 tables), `startup` (Meltano alone).
Rounds alternate the implementations; the table shows medians. Every run is a
subprocess: wall seconds, CPU seconds of the process tree (RUSAGE_CHILDREN deltas; the
Postgres server's own work is not included), and the peak RSS of its largest process
(psutil, every 0.1 s). Scratch databases and directories are dropped unless --keep.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

PROJECT = Path(__file__).resolve().parent.parent
VENV_BIN = PROJECT / ".venv" / "bin"
BENCH_VENV = PROJECT / ".venv-bench"
BENCH_PY = BENCH_VENV / "bin" / "python"
BENCH_INSTALLED = BENCH_VENV / ".installed"  # written by `make bench-install`
# The stock plugins' Meltano project, apart from the project's: `make install` never installs them.
STOCK_PROJECT = PROJECT / "scripts" / "bench"
STOCK_SYS_DIR = BENCH_VENV / "meltano"
DAY = "2024-01-15"
# The issue's workload: (830 orders + 2,155 lines) x 928 = 2,770,080 rows; x0.1 and x10.
SCALES = {"small": 93, "default": 928, "huge": 9280}
GROUPS = ("extract", "csv", "load", "day", "startup")
SOURCE_DB, ANALYTICS_DB, DAY_ANALYTICS_DB = "nw_bench_source", "nw_bench_analytics", "nw_bench_day_analytics"
ORDER_DETAILS_COLUMNS = {
    "order_id": "integer",
    "product_id": "integer",
    "unit_price": "number",
    "quantity": "integer",
    "discount": "number",
}
ORDER_DETAILS_DDL = (
    "CREATE TABLE order_details (order_id integer NOT NULL, product_id smallint NOT NULL, unit_price real NOT NULL,"
    " quantity smallint NOT NULL, discount real NOT NULL, PRIMARY KEY (order_id, product_id))"
)
KEY_STEP = 100_000
CSV_SHARE = 1.0  # 2,155 x 928 = 2.0 M CSV lines at the default scale
RSS_LIMIT_MB = 500


# --------------------------------------------------------------------------------------------
# References: run as `.venv-bench/bin/python scripts/benchmark.py --ref NAME --ref-args JSON`,
# so their imports, CPU and memory are measured like the jobs'. Imports stay inside.
# --------------------------------------------------------------------------------------------


def _pg_url(prefix: str) -> str:
    e = os.environ
    return (
        f"postgresql://{quote(e[prefix + '_USER'], safe='')}:{quote(e[prefix + '_PASSWORD'], safe='')}"
        f"@{e[prefix + '_HOST']}:{e[prefix + '_PORT']}/{quote(e[prefix + '_DATABASE'], safe='')}"
    )


def _psycopg_connect(prefix: str, autocommit: bool = False):
    import psycopg

    e = os.environ
    return psycopg.connect(
        host=e[prefix + "_HOST"],
        port=e[prefix + "_PORT"],
        user=e[prefix + "_USER"],
        password=e[prefix + "_PASSWORD"],
        dbname=e[prefix + "_DATABASE"],
        autocommit=autocommit,
    )


def ref_psycopg_extract(args: dict) -> None:
    """COPY (SELECT *) TO STDOUT (FORMAT csv) -> pyarrow.csv -> Parquet, in ~32 MB chunks."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    oid_types = {
        21: pa.int16(),
        23: pa.int32(),
        20: pa.int64(),
        700: pa.float32(),
        701: pa.float64(),
        1082: pa.date32(),
        16: pa.bool_(),
    }
    out = Path(args["out"])
    with _psycopg_connect("SOURCE_PG") as conn:
        for table in args["tables"]:
            cur = conn.execute(f'SELECT * FROM "{table}" LIMIT 0')
            schema = pa.schema([(d.name, oid_types.get(d.type_code, pa.string())) for d in cur.description])
            read = pacsv.ReadOptions(column_names=schema.names)
            parse = pacsv.ParseOptions(newlines_in_values=True)
            convert = pacsv.ConvertOptions(column_types=schema, quoted_strings_can_be_null=False)
            with pq.ParquetWriter(out / f"{table}.parquet", schema) as writer:
                # One bytearray: psycopg yields one small memoryview per row, far larger than the row.
                chunk = bytearray()
                with conn.cursor().copy(f'COPY (SELECT * FROM "{table}") TO STDOUT (FORMAT csv)') as copy:
                    for data in copy:
                        chunk += data
                        if len(chunk) >= 32 << 20:
                            writer.write_table(
                                pacsv.read_csv(pa.BufferReader(pa.py_buffer(chunk)), read, parse, convert)
                            )
                            chunk = bytearray()
                if chunk:
                    writer.write_table(pacsv.read_csv(pa.BufferReader(pa.py_buffer(chunk)), read, parse, convert))


def ref_adbc_extract(args: dict) -> None:
    """ADBC (COPY BINARY) fetch_record_batch -> ParquetWriter."""
    import adbc_driver_postgresql.dbapi as adbc
    import pyarrow.parquet as pq

    out = Path(args["out"])
    with adbc.connect(_pg_url("SOURCE_PG")) as conn, conn.cursor() as cur:
        for table in args["tables"]:
            cur.execute(f'SELECT * FROM "{table}"')
            reader = cur.fetch_record_batch()
            with pq.ParquetWriter(out / f"{table}.parquet", reader.schema) as writer:
                for batch in reader:
                    writer.write_batch(batch)


def ref_dlt_extract(args: dict) -> None:
    """dlt sql_database source, connectorx backend -> Parquet files on the filesystem destination."""
    import dlt
    from dlt.destinations import filesystem
    from dlt.sources.sql_database import sql_database

    source = sql_database(
        credentials=_pg_url("SOURCE_PG"), schema="public", table_names=args["tables"], backend="connectorx"
    )
    pipeline = dlt.pipeline(
        pipeline_name="bench_extract",
        pipelines_dir=args["pipelines_dir"],
        destination=filesystem(bucket_url=Path(args["out"]).as_uri()),
        dataset_name="bench",
    )
    pipeline.run(source, loader_file_format="parquet", write_disposition="replace")


def ref_bare_csv(args: dict) -> None:
    """pyarrow's bare read of the CSV (declared types) and Parquet write: the floor for extract-csv."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    types = {"integer": pa.int64(), "number": pa.float64()}
    convert = pacsv.ConvertOptions(column_types={k: types[v] for k, v in ORDER_DETAILS_COLUMNS.items()})
    pq.write_table(pacsv.read_csv(args["csv"], convert_options=convert), Path(args["out"]) / "order_details.parquet")


def _pg_type(arrow_type) -> str:
    import pyarrow as pa

    checks = [
        (pa.types.is_int16, "smallint"),
        (pa.types.is_int32, "integer"),
        (pa.types.is_int64, "bigint"),
        (pa.types.is_float32, "real"),
        (pa.types.is_float64, "double precision"),
        (pa.types.is_date32, "date"),
        (pa.types.is_boolean, "boolean"),
        (pa.types.is_timestamp, "timestamp"),
        (pa.types.is_decimal, "numeric"),
    ]
    return next((name for check, name in checks if check(arrow_type)), "text")


def ref_psycopg_load(args: dict) -> None:
    """Parquet -> pyarrow.csv.write_csv -> COPY FROM STDIN into new tables, one transaction."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    schema = args["schema"]
    options = pacsv.WriteOptions(include_header=False)
    with _psycopg_connect("ANALYTICS_PG") as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.execute(f'CREATE SCHEMA "{schema}"')
        for name, path in args["files"].items():
            parquet = pq.ParquetFile(path)
            columns = ", ".join(f'"{f.name}" {_pg_type(f.type)}' for f in parquet.schema_arrow)
            conn.execute(f'CREATE TABLE "{schema}"."{name}" ({columns})')
            with conn.cursor().copy(f'COPY "{schema}"."{name}" FROM STDIN (FORMAT csv)') as copy:
                for batch in parquet.iter_batches(batch_size=100_000):
                    sink = pa.BufferOutputStream()
                    pacsv.write_csv(batch, sink, options)
                    copy.write(memoryview(sink.getvalue()))


def ref_adbc_load(args: dict) -> None:
    """Parquet -> ADBC adbc_ingest (COPY BINARY) into new tables, one transaction."""
    import adbc_driver_postgresql.dbapi as adbc
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = args["schema"]
    with adbc.connect(_pg_url("ANALYTICS_PG")) as conn:
        with conn.cursor() as cur:
            cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            cur.execute(f'CREATE SCHEMA "{schema}"')
            for name, path in args["files"].items():
                parquet = pq.ParquetFile(path)
                reader = pa.RecordBatchReader.from_batches(
                    parquet.schema_arrow, parquet.iter_batches(batch_size=100_000)
                )
                cur.adbc_ingest(name, reader, mode="create", db_schema_name=schema)
        conn.commit()


def ref_dlt_load(args: dict) -> None:
    """dlt postgres destination fed Arrow batches of the Parquet files, with the given loader file format."""
    import dlt
    import pyarrow as pa
    import pyarrow.parquet as pq
    from dlt.destinations import postgres

    def resource(name: str, path: str):
        @dlt.resource(name=name, write_disposition="replace")
        def batches():
            # float32 -> float64: dlt creates `double precision` columns, and its ADBC job sends
            # float32 as float4, which Postgres refuses ("insufficient data left in message").
            for batch in pq.ParquetFile(path).iter_batches(batch_size=100_000):
                schema = pa.schema(
                    [f.with_type(pa.float64()) if pa.types.is_float32(f.type) else f for f in batch.schema]
                )
                yield batch.cast(schema)

        return batches

    file_format = args["format"]
    pipeline = dlt.pipeline(
        pipeline_name=f"bench_load_{file_format}",
        pipelines_dir=args["pipelines_dir"],
        destination=postgres(credentials=_pg_url("ANALYTICS_PG")),
        dataset_name=args["schema"],
    )
    resources = [resource(name, path) for name, path in args["files"].items()]
    pipeline.run(resources, loader_file_format=file_format)


REFERENCES = {
    "psycopg-extract": ref_psycopg_extract,
    "adbc-extract": ref_adbc_extract,
    "dlt-extract": ref_dlt_extract,
    "bare-csv": ref_bare_csv,
    "psycopg-load": ref_psycopg_load,
    "adbc-load": ref_adbc_load,
    "dlt-load": ref_dlt_load,
}


# --------------------------------------------------------------------------------------------
# Measuring one subprocess (tree).
# --------------------------------------------------------------------------------------------


@dataclass
class Sample:
    wall: float
    cpu: float
    rss_mb: float
    ok: bool


def measure(cmd: list[str], env: dict[str, str], log: Path) -> Sample:
    import psutil

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    peak = 0
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=PROJECT, stdout=out, stderr=subprocess.STDOUT)
        root = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                tree = [root, *root.children(recursive=True)]
            except psutil.Error:
                tree = []
            for p in tree:
                with contextlib.suppress(psutil.Error):
                    peak = max(peak, p.memory_info().rss)
            time.sleep(0.1)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode:
        tail = log.read_text(errors="replace")[-2500:]
        print(f"  FAILED ({proc.returncode}): {' '.join(cmd[:6])} ... log {log}\n{tail}", file=sys.stderr)
    return Sample(wall, cpu, peak / 2**20, proc.returncode == 0)


@dataclass
class Row:
    scale: str
    group: str
    name: str
    rows: int | None
    samples: list[Sample] = field(default_factory=list)

    def median(self, attr: str) -> float | None:
        values = [getattr(s, attr) for s in self.samples if s.ok]
        return statistics.median(values) if values else None

    @property
    def is_job(self) -> bool:
        return self.name.startswith("job ")


# --------------------------------------------------------------------------------------------
# The workload.
# --------------------------------------------------------------------------------------------


def _ident(name: str):
    from psycopg import sql

    return sql.Identifier(name)


def create_databases(names: list[str], reader: str, owner: str) -> None:
    from psycopg import sql

    from northwind_elt.local import postgres as embedded

    with embedded.admin_connect() as conn:
        for name in names:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(_ident(name)))
            if name == SOURCE_DB:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(_ident(name)))
                conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(_ident(name), _ident(reader)))
            else:
                conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(_ident(name), _ident(owner)))


def drop_databases(names: list[str]) -> None:
    from psycopg import sql

    from northwind_elt.local import postgres as embedded

    with embedded.admin_connect() as conn:
        for name in names:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(_ident(name)))


def build_source(copies: int, reader: str) -> tuple[int, int]:
    """orders (from northwind) and order_lines (order_details.csv) x copies, keys offset by k*100000."""
    from psycopg import sql

    from northwind_elt.local import postgres as embedded

    with embedded.admin_connect("northwind") as conn:
        columns = conn.execute(
            "SELECT attname, format_type(atttypid, atttypmod), attnotnull FROM pg_attribute"
            " WHERE attrelid = 'public.orders'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
        ).fetchall()
        with conn.cursor().copy("COPY orders TO STDOUT") as copy:
            orders = b"".join(bytes(chunk) for chunk in copy)
    ddl = ", ".join(
        f'"{name}" {"integer" if name == "order_id" else kind}{" NOT NULL" if notnull else ""}'
        for name, kind, notnull in columns
    )
    names = ", ".join(f'"{name}"' for name, _, _ in columns)
    rest = ", ".join(f'o."{name}"' for name, _, _ in columns if name != "order_id")
    with embedded.admin_connect(SOURCE_DB) as conn:
        conn.execute(f"CREATE UNLOGGED TABLE seed_orders ({ddl})")
        with conn.cursor().copy("COPY seed_orders FROM STDIN") as copy:
            copy.write(orders)
        conn.execute(
            ORDER_DETAILS_DDL.replace("order_details", "seed_order_details").replace(", PRIMARY KEY", ", UNIQUE")
        )
        with (
            (PROJECT / "data" / "order_details.csv").open("rb") as source,
            conn.cursor().copy("COPY seed_order_details FROM STDIN (FORMAT csv, HEADER true)") as copy,
        ):
            copy.write(source.read())
        conn.execute(f"CREATE TABLE orders ({ddl}, PRIMARY KEY (order_id))")
        conn.execute(ORDER_DETAILS_DDL.replace("order_details", "order_lines"))
        conn.execute(
            f"INSERT INTO orders ({names}) SELECT o.order_id + k * {KEY_STEP}, {rest}"
            " FROM generate_series(0, %s - 1) AS k, seed_orders AS o ORDER BY 1",
            [copies],
        )
        conn.execute(
            f"INSERT INTO order_lines SELECT d.order_id + k * {KEY_STEP}, d.product_id, d.unit_price, d.quantity,"
            " d.discount FROM generate_series(0, %s - 1) AS k, seed_order_details AS d ORDER BY 1, 2",
            [copies],
        )
        conn.execute("DROP TABLE seed_orders, seed_order_details")
        conn.execute("VACUUM ANALYZE orders")
        conn.execute("VACUUM ANALYZE order_lines")
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(_ident(reader)))
        conn.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(_ident(reader)))
        n_orders = conn.execute("SELECT count(*) FROM orders").fetchone()[0]
        n_details = conn.execute("SELECT count(*) FROM order_lines").fetchone()[0]
    return n_orders, n_details


def write_csv(path: Path, copies: int) -> int:
    from northwind_elt.local import postgres as embedded

    query = (
        "COPY (SELECT order_id, product_id, unit_price, quantity, discount FROM order_lines"
        f" WHERE order_id < {copies * KEY_STEP} ORDER BY 1, 2) TO STDOUT (FORMAT csv, HEADER true)"
    )
    with embedded.admin_connect(SOURCE_DB) as conn:
        with path.open("wb") as out, conn.cursor().copy(query) as copy:
            for chunk in copy:
                out.write(chunk)
        return conn.execute(f"SELECT count(*) FROM order_lines WHERE order_id < {copies * KEY_STEP}").fetchone()[0]


def northwind_rows() -> int:
    from northwind_elt.local import postgres as embedded

    with embedded.admin_connect("northwind") as conn:
        tables = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
        return sum(conn.execute(f'SELECT count(*) FROM public."{t}"').fetchone()[0] for (t,) in tables)


def drop_schema(database: str, schema: str) -> None:
    from northwind_elt.local import postgres as embedded

    with embedded.admin_connect(database) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def ensure_bench_venv() -> None:
    if not BENCH_INSTALLED.exists():
        sys.exit(f"the references are not installed ({BENCH_VENV}): make bench-install, then rerun (or: make bench)")


# --------------------------------------------------------------------------------------------
# One scale: the runs of each group, round by round.
# --------------------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path, base_env: dict[str, str]) -> None:
        self.args, self.work, self.base_env = args, work, base_env
        self.rows: list[Row] = []

    def job_env(self, data_dir: Path, **extra: str) -> dict[str, str]:
        return {
            **self.base_env,
            "NW_DATA_DIR": str(data_dir),
            "MELTANO_DATABASE_URI": f"sqlite:///{data_dir / 'meltano.db'}",
            **extra,
        }

    def run_scale(self, scale: str, groups: set[str], with_day: bool) -> None:
        copies = SCALES[scale]
        csv_copies = max(1, round(copies * CSV_SHARE))
        work = self.work / scale
        data_dir, refs, logs = work / "data", work / "refs", work / "logs"
        for d in (data_dir, refs, logs):
            d.mkdir(parents=True, exist_ok=True)
        reader, owner = self.base_env["SOURCE_PG_USER"], self.base_env["ANALYTICS_PG_USER"]
        print(f"[{scale}] building the workload: N={copies} ...", flush=True)
        create_databases([SOURCE_DB, ANALYTICS_DB, *([DAY_ANALYTICS_DB] if with_day else [])], reader, owner)
        n_orders, n_details = build_source(copies, reader)
        csv_path = work / "order_details.csv"
        n_csv = write_csv(csv_path, csv_copies)
        print(f"[{scale}] orders {n_orders:,}, order_lines {n_details:,}, CSV {n_csv:,} rows", flush=True)
        pg_rows = n_orders + n_details
        load_rows = pg_rows + n_csv
        csv_env = {
            "TAP_TYPED_CSV_FILES": json.dumps(
                [
                    {
                        "stream": "order_details",
                        "path": str(csv_path),
                        "key": ["order_id", "product_id"],
                        "columns": ORDER_DETAILS_COLUMNS,
                    }
                ]
            )
        }
        env = self.job_env(data_dir, SOURCE_PG_DATABASE=SOURCE_DB, ANALYTICS_PG_DATABASE=ANALYTICS_DB, **csv_env)
        ref_env = {
            **env,
            "RUNTIME__DLTHUB_TELEMETRY": "false",
            "RUNTIME__LOG_LEVEL": "WARNING",
        }
        nw = str(VENV_BIN / "nw")
        meltano = str(VENV_BIN / "meltano")
        tables = ["orders", "order_lines"]
        load_files = {
            "orders": str(data_dir / "postgres" / "orders" / DAY / "orders.parquet"),
            "order_lines": str(data_dir / "postgres" / "order_lines" / DAY / "order_lines.parquet"),
            "csv_order_details": str(data_dir / "csv" / DAY / "order_details.parquet"),
        }

        def ref(kind: str, **kwargs) -> tuple[list[str], dict[str, str]]:
            return [str(BENCH_PY), __file__, "--ref", kind, "--ref-args", json.dumps(kwargs)], ref_env

        def fresh(path: Path) -> str:
            shutil.rmtree(path, ignore_errors=True)
            path.mkdir(parents=True)
            return str(path)

        # (group, name, rows, command factory: called before each run, after its own cleanup)
        plan: list[tuple[str, str, int | None, object]] = []

        def add(group: str, name: str, n: int | None, factory) -> None:
            plan.append((group, name, n, factory))

        def job(name: str, run_env: dict[str, str] = env):
            return lambda: ([nw, "--date", DAY, "run", name], run_env)

        if "extract" in groups:
            add("extract", "job extract-postgres", pg_rows, job("extract-postgres"))
            add(
                "extract",
                "psycopg COPY -> pyarrow",
                pg_rows,
                lambda: ref("psycopg-extract", tables=tables, out=fresh(refs / "psycopg")),
            )
            add(
                "extract",
                "ADBC -> Parquet",
                pg_rows,
                lambda: ref("adbc-extract", tables=tables, out=fresh(refs / "adbc")),
            )
            add(
                "extract",
                "dlt sql_database/connectorx",
                pg_rows,
                lambda: ref(
                    "dlt-extract", tables=tables, out=fresh(refs / "dlt"), pipelines_dir=fresh(refs / "dlt-pipelines")
                ),
            )
        if "csv" in groups:
            add("csv", "job extract-csv", n_csv, job("extract-csv"))
            add(
                "csv",
                "pyarrow bare read+write",
                n_csv,
                lambda: ref("bare-csv", csv=str(csv_path), out=fresh(refs / "bare")),
            )
        if "load" in groups:
            add("load", "job load", load_rows, job("load"))
            add(
                "load",
                "psycopg pyarrow -> COPY",
                load_rows,
                lambda: ref("psycopg-load", files=load_files, schema="ref_psycopg"),
            )
            add("load", "ADBC adbc_ingest", load_rows, lambda: ref("adbc-load", files=load_files, schema="ref_adbc"))
            for label, file_format in (
                ("dlt parquet (ADBC)", "parquet"),
                ("dlt csv (COPY)", "csv"),
                ("dlt insert_values (default)", "insert_values"),
            ):
                add(
                    "load",
                    label,
                    load_rows,
                    lambda f=file_format: ref(
                        "dlt-load",
                        files=load_files,
                        schema=f"dlt_{f}",
                        format=f,
                        pipelines_dir=fresh(refs / "dlt-load-pipelines"),
                    ),
                )
            if not {"extract", "csv"} <= groups:
                print(f"[{scale}] load needs the day's extracts: running them once (not timed) ...", flush=True)
                for name in ("extract-postgres", "extract-csv"):
                    sample = measure([nw, "--date", DAY, "run", name], env, logs / f"setup-{name}.log")
                    if not sample.ok:
                        sys.exit(f"{name} failed; see {logs / f'setup-{name}.log'}")
        if with_day and "day" in groups:
            nw_rows = northwind_rows()
            day_env = {
                k: v
                for k, v in self.job_env(
                    work / "day-data", SOURCE_PG_DATABASE="northwind", ANALYTICS_PG_DATABASE=DAY_ANALYTICS_DB
                ).items()
                if not k.startswith("TAP_")
            }
            # Stock settings, except what the stock target needs to accept the stock tap's stream;
            # the stock plugins' own Meltano project and system database.
            stock_env = {
                **day_env,
                "MELTANO_PROJECT_ROOT": str(STOCK_PROJECT),
                "MELTANO_SYS_DIR_ROOT": str(STOCK_SYS_DIR),
                "MELTANO_DATABASE_URI": f"sqlite:///{work / 'day-data' / 'stock-meltano.db'}",
                "TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA": "stock_northwind",
                "TARGET_POSTGRES_ACTIVATE_VERSION": "false",
            }

            def stock():
                drop_schema(DAY_ANALYTICS_DB, "stock_northwind")
                return [meltano, "run", "--full-refresh", "tap-postgres", "target-postgres"], stock_env

            add("day", "job nw run daily (whole day)", nw_rows, job("daily", day_env))
            add("day", "stock meltano run tap-postgres target-postgres", nw_rows, stock)
        if with_day and "startup" in groups:
            add("startup", "meltano --version", None, lambda: ([meltano, "--version"], env))
            add(
                "startup",
                "meltano invoke tap-postgres-arrow --about",
                None,
                lambda: ([meltano, "invoke", "tap-postgres-arrow", "--about"], env),
            )

        rows = {name: Row(scale, group, name, n) for group, name, n, _ in plan}
        self.rows += rows.values()
        for round_no in range(1, self.args.rounds + 1):
            for group, name, _, factory in plan:
                cmd, cmd_env = factory()
                slug = "".join(c if c.isalnum() else "-" for c in name)[:40]
                sample = measure(cmd, cmd_env, logs / f"r{round_no}-{slug}.log")
                rows[name].samples.append(sample)
                status = "" if sample.ok else "  FAILED"
                print(
                    f"[{scale}] round {round_no} {group:<8} {name:<48} {sample.wall:7.1f} s wall"
                    f" {sample.cpu:7.1f} s cpu {sample.rss_mb:7.0f} MB{status}",
                    flush=True,
                )


# --------------------------------------------------------------------------------------------
# The report.
# --------------------------------------------------------------------------------------------


def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), "?")
    meminfo = Path("/proc/meminfo").read_text()
    total_kb = int(next(line.split()[1] for line in meminfo.splitlines() if line.startswith("MemTotal")))
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{os.cpu_count()} CPUs ({model}), {total_kb / 2**20:.1f} GiB RAM, load average at start {load}"


def _fmt(value: float | None, spec: str) -> str:
    return "failed" if value is None else format(value, spec)


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def _mark(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "NOT met")


def report(rows: list[Row], scales: list[str]) -> str:
    def find(scale: str, group: str, prefix: str) -> list[Row]:
        return [r for r in rows if r.scale == scale and r.group == group and r.name.startswith(prefix)]

    def wall(scale: str, group: str, prefix: str) -> float | None:
        found = find(scale, group, prefix)
        return found[0].median("wall") if found else None

    def dlt_best(scale: str, group: str) -> float | None:
        walls = [w for r in find(scale, group, "dlt") if (w := r.median("wall")) is not None]
        return min(walls) if walls else None

    lines = [
        "| scale | group | run | rows | wall s | CPU s | rows/s | peak RSS MB | x ref | x dlt best | targets |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        w, cpu, rss = r.median("wall"), r.median("cpu"), r.median("rss_mb")
        ref = {
            "extract": wall(r.scale, "extract", "psycopg"),
            "load": wall(r.scale, "load", "psycopg"),
            "csv": wall(r.scale, "csv", "pyarrow"),
            "day": wall(r.scale, "day", "stock"),
        }.get(r.group)
        best = dlt_best(r.scale, r.group)
        x_ref = _ratio(w, ref) if r.is_job else None
        x_dlt = _ratio(w, best) if r.is_job else None
        targets = []
        if r.is_job:
            limits = {"extract": (1.5, 1.2), "load": (2.0, 1.0), "csv": (10.0, None), "day": (1.5, None)}[r.group]
            ref_name = {"extract": "psycopg", "load": "psycopg", "csv": "pyarrow", "day": "stock"}[r.group]
            targets.append(f"≤{limits[0]}x {ref_name}: {_mark(None if x_ref is None else x_ref <= limits[0])}")
            if limits[1] is not None:
                targets.append(f"≤{limits[1]}x dlt best: {_mark(None if x_dlt is None else x_dlt <= limits[1])}")
            targets.append(f"RSS ≤{RSS_LIMIT_MB} MB: {_mark(None if rss is None else rss <= RSS_LIMIT_MB)}")
        if r.name.startswith("meltano invoke"):
            targets.append(f"start-up ≤3 s per EL block: {_mark(None if w is None else w <= 3.0)}")
        rate = f"{r.rows / w:,.0f}" if r.rows and w else ""
        count = f"{r.rows:,}" if r.rows else ""
        lines.append(
            f"| {r.scale} | {r.group} | {r.name} | {count} | {_fmt(w, '.1f')} | {_fmt(cpu, '.1f')} | {rate} "
            f"| {_fmt(rss, '.0f')} | {_fmt(x_ref, '.2f') if r.is_job and r.group != 'startup' else ''} "
            f"| {_fmt(x_dlt, '.2f') if r.is_job and best is not None else ''} | {'; '.join(targets)} |"
        )
    if len(scales) >= 2:
        small, big = scales[0], scales[-1]
        factor = SCALES[big] // SCALES[small]
        for r in rows:
            if r.scale != big or not r.is_job:
                continue
            before = [s for s in rows if s.scale == small and s.name == r.name]
            if not before:
                continue
            rss_small, rss_big = before[0].median("rss_mb"), r.median("rss_mb")
            x = _ratio(rss_big, rss_small)
            met = _mark(None if x is None else x <= 1.2)
            lines.append(
                f"| {small}→{big} | memory | {r.name}: x{factor} rows | | | | | {_fmt(rss_small, '.0f')}→"
                f"{_fmt(rss_big, '.0f')} | {_fmt(x, '.2f')} | | ≤1.2x memory: {met} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", default="default", help="small|default|huge, or several: small,default")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default=",".join(GROUPS), help=f"comma-separated subset of {','.join(GROUPS)}")
    parser.add_argument("--keep", action="store_true", help="keep the scratch databases and directory")
    parser.add_argument("--ref", choices=sorted(REFERENCES), help=argparse.SUPPRESS)
    parser.add_argument("--ref-args", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ref:
        REFERENCES[args.ref](json.loads(args.ref_args))
        return

    scales = [s.strip() for s in args.scale.split(",") if s.strip()]
    groups = {g.strip() for g in args.only.split(",") if g.strip()}
    if unknown := [s for s in scales if s not in SCALES] + sorted(groups - set(GROUPS)):
        parser.error(f"unknown scale or group: {', '.join(unknown)}")
    scales.sort(key=SCALES.get)

    from dotenv import load_dotenv

    load_dotenv(PROJECT / ".env", override=False)
    from northwind_elt.local import postgres as embedded

    if not embedded.is_running():
        sys.exit("the embedded Postgres is not running: .venv/bin/nw db up")
    ensure_bench_venv()
    base_env = {
        k: v for k, v in os.environ.items() if not k.startswith(("TAP_", "TARGET_", "RUN_DATE", "MELTANO_DATABASE"))
    }
    base_env |= {"MELTANO_PROJECT_ROOT": str(PROJECT), "NW_PROJECT_ROOT": str(PROJECT)}
    base_env["PATH"] = f"{VENV_BIN}:{base_env.get('PATH', '')}"
    work = Path(tempfile.mkdtemp(prefix="nw-bench-"))
    bench = Bench(args, work, base_env)
    started = time.monotonic()
    header = f"machine: {machine()}\ncommand: {' '.join([sys.executable, *sys.argv])}"
    print(header, flush=True)
    try:
        for i, scale in enumerate(scales):
            bench.run_scale(scale, groups, with_day=i == 0)
    finally:
        if args.keep:
            print(f"kept: {work}, databases {SOURCE_DB}, {ANALYTICS_DB}, {DAY_ANALYTICS_DB}")
        else:
            drop_databases([SOURCE_DB, ANALYTICS_DB, DAY_ANALYTICS_DB])
            shutil.rmtree(work, ignore_errors=True)
    print()
    print(header)
    print(f"rounds: {args.rounds} (median shown), total {time.monotonic() - started:.0f} s; day {DAY}")
    print()
    print(report(bench.rows, scales))


if __name__ == "__main__":
    main()
