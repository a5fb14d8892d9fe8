"""Benchmark the real jobs against reference implementations on the same data.

    .venv/bin/python scripts/benchmark.py                        # N=928: 2.77 M source rows, 2.0 M CSV rows
    .venv/bin/python scripts/benchmark.py --scale small          # N=93 (a quick check)
    .venv/bin/python scripts/benchmark.py --scale small,default  # both, plus the x10-rows memory target
    .venv/bin/python scripts/benchmark.py --scale huge --rounds 1 --only extract,csv,load   # 27.7 M + 20 M rows
    .venv/bin/python scripts/benchmark.py --only people,padam,ads --rounds 1 --keep

Needs the embedded server (`.venv/bin/nw db up`) and the references: `make bench-install`
installs the `bench` extra from uv.lock into .venv-bench, and the stock tap-postgres and
target-postgres of the benchmark's own Meltano project (scripts/bench/meltano.yml) into
.venv-bench/meltano; `make bench BENCH_ARGS="..."` does both, then runs this script.

Workload: Northwind `orders` (830 rows, from the seeded `northwind` database) and
`order_details` (2,155 rows, data/order_details.csv) replicated N times with SQL in a
scratch source database (keys offset by k*100000, so order_id is widened to integer),
and an order_details CSV of the same N copies (2.0 M rows at N=928, 20 M at N=9280).
The replicated order_details table is named `order_lines` there: the load gate refuses a
table that two extract steps produce, and extract-csv produces `order_details`.

Groups (--only), on that workload at every scale: `extract` (extract-postgres job vs
psycopg COPY->pyarrow, ADBC, dlt sql_database/connectorx -> Parquet), `csv` (extract-csv
job vs pyarrow's bare CSV read + Parquet write), `load` (load job vs psycopg
Parquet->CSV->COPY, ADBC adbc_ingest, dlt parquet/ADBC, csv/COPY and insert_values, all
loading the Parquet files the extract jobs published). On the pipelines' own inputs, at
the first scale only: `day` (`nw run daily` of the real Northwind day vs a stock `meltano
run tap-postgres target-postgres` of the same 13 tables), `startup` (Meltano alone),
`people` (`nw run people-daily` vs pyarrow reading both CSVs, joining, counting and
writing the summary JSON, which must equal the job's byte for byte), `padam` (a year as
`scripts/insert_all_data.sh 2022` runs it at controller 100, from empty databases every
round, vs the project's generator and one SQL statement of daily and monthly stats per
month, writing the same files, which must equal the job's), `ads` (`nw ads load` against
its own mock API and S3 server, started with `nw ads up` on free ports and stopped at the
end, vs one requests GET, a boto3 put of the body and a psycopg insert of the 100 rows).
The Northwind and people days rerun the same day each round on the same scratch state.

Rounds alternate the implementations; the table shows medians. Every run is a
subprocess: wall seconds, CPU seconds of the process tree (RUSAGE_CHILDREN deltas; the
Postgres server's own work is not included), and the peak RSS of its largest process
(psutil, every 0.1 s). After the table, issue 26's targets, each with its measured
figure: met, NOT met, or not measured (its runs not part of this run, or failed).
Scratch databases and directories are dropped unless --keep.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import resource
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
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
GROUPS = ("extract", "csv", "load", "day", "startup", "people", "padam", "ads")
# Groups on the N-copy workload, measured at every scale; the others run on the pipelines' own
# inputs (fixed sizes), at the first scale of the run only.
SCALED_GROUPS = ("extract", "csv", "load")
SOURCE_DB, ANALYTICS_DB, DAY_ANALYTICS_DB = "nw_bench_source", "nw_bench_analytics", "nw_bench_day_analytics"
PEOPLE_DB, ADS_DB = "nw_bench_people", "nw_bench_ads"
PADAM_PROD_DB, PADAM_WH_DB, PADAM_REF_DB = "nw_bench_padam_production", "nw_bench_padam_warehouse", "nw_bench_padam_ref"
SCRATCH_DATABASES = (
    SOURCE_DB,
    ANALYTICS_DB,
    DAY_ANALYTICS_DB,
    PEOPLE_DB,
    PADAM_PROD_DB,
    PADAM_WH_DB,
    PADAM_REF_DB,
    ADS_DB,
)
# The people pipeline's inputs, as pipelines/people.meltano.yml names them.
PEOPLE_FILES = PROJECT / "data" / "people-places"
# The README's PADAM year: 2022 at the evaluation size (specs/padam.md: 742,650 rows).
PADAM_YEAR, PADAM_CONTROLLER, PADAM_YEAR_ROWS = 2022, 100, 742_650
ADS_RECORDS = 100  # one API response (specs/ads-api.md)
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
RSS_GROWTH_PER_10X = 1.2
# Each job's reference in the table's "x ref" column: the start of its name.
MAIN_REFERENCE = {
    "extract": "psycopg",
    "load": "psycopg",
    "csv": "pyarrow",
    "day": "stock",
    "people": "pyarrow",
    "padam": "psycopg",
    "ads": "requests",
}
# The whole-pipeline targets in seconds (issue 26): group, what, limit.
PIPELINE_SECONDS = (
    ("people", "people day (`nw run people-daily`)", 10.0),
    ("padam", "PADAM year at controller 100 (`insert_all_data.sh`)", 45.0),
    ("ads", "one ads load (`nw ads load`)", 6.0),
)


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


def ref_people(args: dict) -> None:
    """people.csv and places.csv (pyarrow) -> left join on the city -> people per country -> the summary JSON."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    people = pacsv.read_csv(
        args["people"], convert_options=pacsv.ConvertOptions(column_types={"date_of_birth": pa.date32()})
    )
    places = pacsv.read_csv(args["places"])
    joined = people.join(places, keys="place_of_birth", right_keys="city", join_type="left outer")
    # As the pipeline's audit: a person whose place is unknown fails, never vanishes from the counts.
    if unmatched := joined["country"].null_count:
        sys.exit(f"{unmatched} people have a place_of_birth that is not a city of {args['places']}")
    counts = joined.group_by("country").aggregate([([], "count_all")]).to_pylist()
    ordered = sorted(counts, key=lambda row: (-row["count_all"], row["country"]))
    summary = {row["country"]: row["count_all"] for row in ordered}
    # The sample's shape: one compact object, UTF-8 not escaped, no newline.
    Path(args["out"]).write_bytes(json.dumps(summary, ensure_ascii=False, separators=(",", ":")).encode())


# One statement per month: the stats of each day and of the month (the row whose day is NULL).
PADAM_MONTH_STATS = """
    SELECT extract(day FROM created_at::date)::int, count(*), sum(value)::bigint, min(value)::bigint,
           max(value)::bigint, (sum(value) / count(*))::text
    FROM entity WHERE created_at >= %s AND created_at < %s
    GROUP BY GROUPING SETS ((created_at::date), ())
    ORDER BY 1 NULLS LAST
"""


def _float8_text(value: float) -> str:
    """Postgres's text of a double (shortest round trip; a whole number without '.0')."""
    return str(int(value)) if value.is_integer() else repr(value)


def ref_padam(args: dict) -> None:
    """A PADAM year: each month generated into production with the project's generator, its daily and
    monthly stats computed by one SQL statement, the files written as the contract lays them out."""
    from northwind_elt.pipelines.padam import generator

    year, controller, out = args["year"], args["controller"], Path(args["out"])

    def write(relative: str, header: str, row: list) -> None:
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{header}\n{','.join(map(str, row))}\n", encoding="ascii")

    rows = 0
    ytd_count, ytd_sum, ytd_min, ytd_max = 0, 0, None, None
    with _psycopg_connect("PADAM_PROD_PG", autocommit=True) as conn:
        conn.execute("SET extra_float_digits = 1")
        generator.ensure_schema(conn)
        for month in range(1, 13):
            rows += generator.insert_month(conn, year, month, controller)
            for day, count, total, low, high, mean in conn.execute(
                PADAM_MONTH_STATS, generator.month_bounds(year, month)
            ):
                if day is None:
                    write(
                        f"year={year}/month={month}/entity_stats_monthly_{year}_{month}.csv",
                        "year,month,sum_values,min_values,max_values,mean_values",
                        [year, month, total, low, high, mean],
                    )
                    ytd_count, ytd_sum = ytd_count + count, ytd_sum + total
                    ytd_min = low if ytd_min is None else min(ytd_min, low)
                    ytd_max = high if ytd_max is None else max(ytd_max, high)
                else:
                    write(
                        f"year={year}/month={month}/day={day}/entity_stats_daily_{year}_{month}_{day}.csv",
                        "year,month,day,sum_values,min_values,max_values,mean_values",
                        [year, month, day, total, low, high, mean],
                    )
            # The yearly file holds the year to date, rewritten every month.
            write(
                f"year={year}/entity_stats_yearly_{year}.csv",
                "year,sum_values,min_values,max_values,mean_values",
                [year, ytd_sum, ytd_min, ytd_max, _float8_text(ytd_sum / ytd_count)],
            )
    if rows != args["rows"]:
        sys.exit(f"the generator gave {rows:,} rows for {year} at controller {controller}, not {args['rows']:,}")


def ref_ads(args: dict) -> None:
    """One API call (requests) -> the body as received to S3 (boto3) -> typed rows into Postgres (psycopg)."""
    import uuid

    import boto3
    import requests
    from psycopg.types.json import Jsonb

    e = os.environ
    response = requests.get(e["ADS_API_URL"].rstrip("/") + "/ads", timeout=30)
    response.raise_for_status()
    records = response.json()
    key = f"reference/{args['day']}/{uuid.uuid4().hex}.json"
    s3 = boto3.client(
        "s3",
        endpoint_url=e.get("ADS_S3_ENDPOINT_URL") or None,
        region_name=e.get("ADS_S3_REGION") or "us-east-1",
        aws_access_key_id=e.get("ADS_S3_ACCESS_KEY_ID") or None,
        aws_secret_access_key=e.get("ADS_S3_SECRET_ACCESS_KEY") or None,
    )
    s3.put_object(Bucket=e["ADS_S3_BUCKET"], Key=key, Body=response.content)
    rows = [
        (
            r["ad_id"],
            r["ad_group"],
            None if r["ad_campaign"] == "__unknown" else r["ad_campaign"],
            Jsonb(r["ad_scheme"]) if "ad_scheme" in r else None,
            r["shown_at"],
            key,
        )
        for r in records
    ]
    with _psycopg_connect("ADS_PG") as conn:
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {args['schema']}")
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {args['schema']}.api_ad_data (ad_id text PRIMARY KEY, ad_group text NOT NULL,"
            " ad_campaign integer, ad_scheme jsonb, shown_at timestamptz NOT NULL,"
            " inserted_at timestamptz NOT NULL DEFAULT now(), backup_key text NOT NULL)"
        )
        with conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {args['schema']}.api_ad_data (ad_id, ad_group, ad_campaign, ad_scheme, shown_at,"
                " backup_key) VALUES (%s, %s, %s, %s, to_timestamp(%s), %s) ON CONFLICT (ad_id) DO NOTHING",
                rows,
            )
        query = f"SELECT count(*) FROM {args['schema']}.api_ad_data WHERE backup_key = %s"
        inserted = conn.execute(query, [key]).fetchone()[0]
    if not len(records) == inserted == args["records"]:
        sys.exit(f"the API gave {len(records)} records and {inserted} were inserted, not {args['records']}")


REFERENCES = {
    "psycopg-extract": ref_psycopg_extract,
    "adbc-extract": ref_adbc_extract,
    "dlt-extract": ref_dlt_extract,
    "bare-csv": ref_bare_csv,
    "psycopg-load": ref_psycopg_load,
    "adbc-load": ref_adbc_load,
    "dlt-load": ref_dlt_load,
    "people": ref_people,
    "padam": ref_padam,
    "ads": ref_ads,
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
    waited: bool = False  # for a lock another run of the project held (the figure includes the wait)


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
    # Meltano's run directories are the project's: a run of the same job from another data
    # directory (a test, another benchmark) makes this one wait, and says so.
    waited = any("waiting" in line and "(lock " in line for line in log.read_text(errors="replace").splitlines())
    return Sample(wall, cpu, peak / 2**20, proc.returncode == 0, waited)


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

    @property
    def waits(self) -> int:
        return sum(s.waited for s in self.samples)


# --------------------------------------------------------------------------------------------
# The workload.
# --------------------------------------------------------------------------------------------


def _ident(name: str):
    from psycopg import sql

    return sql.Identifier(name)


def create_database(name: str, owner: str) -> None:
    """A new, empty database owned by `owner` (dropped first if it exists)."""
    create_databases([name], owner, owner)


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


@dataclass
class Planned:
    group: str
    name: str
    rows: int | None
    factory: Callable[[], tuple[list[str], dict[str, str]]]  # called before each run, after its own cleanup
    # After each run: None, or why its output is not what the job's is (the run then counts as failed).
    check: Callable[[], str | None] | None = None


def ref_command(kind: str, env: dict[str, str], **kwargs) -> tuple[list[str], dict[str, str]]:
    return [str(BENCH_PY), __file__, "--ref", kind, "--ref-args", json.dumps(kwargs)], env


def fresh(path: Path) -> str:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return str(path)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def data_lines(path: Path) -> int:
    """The rows of a CSV file with a header (the last line may lack its newline)."""
    with path.open("rb") as handle:
        return sum(1 for _ in handle) - 1


def published_file(partition: Path, table: str) -> str:
    """The Parquet file a partition's manifest (its commit) names: each attempt writes its own."""
    manifest = partition / f"{table}.manifest.json"
    try:
        return str(partition / json.loads(manifest.read_text())["file"])
    except (OSError, ValueError, KeyError) as err:
        return f"{manifest} names no file ({err}): did the extract job fail?"


def same_bytes(job_output: Path, ref_output: Path) -> str | None:
    if not job_output.exists():
        print(f"  (not compared: the job's {job_output} is missing)", file=sys.stderr)
        return None
    if not ref_output.exists():
        return f"the reference wrote no {ref_output}"
    if job_output.read_bytes() != ref_output.read_bytes():
        return f"{ref_output} differs from the job's {job_output}"
    return None


def same_tree(job_root: Path, ref_root: Path) -> str | None:
    """Every file under both folders, byte for byte."""

    def files(root: Path) -> dict[str, bytes]:
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}

    job, ref = files(job_root), files(ref_root)
    if not job:
        print(f"  (not compared: the job wrote nothing under {job_root})", file=sys.stderr)
        return None
    differ = sorted(name for name in job.keys() | ref.keys() if job.get(name) != ref.get(name))
    if differ:
        return f"{len(differ)} of {len(job)} files differ between {job_root} and {ref_root}, e.g. {differ[:3]}"
    return None


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path, base_env: dict[str, str]) -> None:
        self.args, self.work, self.base_env = args, work, base_env
        self.rows: list[Row] = []
        self.cleanups: list[Callable[[], None]] = []  # run at the end, whatever happened
        self.nw = str(VENV_BIN / "nw")
        self.meltano = str(VENV_BIN / "meltano")

    def job_env(self, data_dir: Path, **extra: str) -> dict[str, str]:
        return {
            **self.base_env,
            "NW_DATA_DIR": str(data_dir),
            "MELTANO_DATABASE_URI": f"sqlite:///{data_dir / 'meltano.db'}",
            **extra,
        }

    def job(self, name: str, env: dict[str, str]) -> Callable[[], tuple[list[str], dict[str, str]]]:
        return lambda: ([self.nw, "--date", DAY, "run", name], env)

    def run_scale(self, scale: str, groups: set[str], with_fixed: bool) -> None:
        work = self.work / scale
        plan: list[Planned] = []
        if groups & set(SCALED_GROUPS):
            plan += self.plan_scaled(scale, groups, work)
        if with_fixed:
            plan += self.plan_fixed(groups, work)
        self.run_plan(scale, plan, work / "logs")

    def plan_scaled(self, scale: str, groups: set[str], work: Path) -> list[Planned]:
        copies = SCALES[scale]
        csv_copies = max(1, round(copies * CSV_SHARE))
        data_dir, refs, logs = work / "data", work / "refs", work / "logs"
        for d in (data_dir, refs, logs):
            d.mkdir(parents=True, exist_ok=True)
        reader, owner = self.base_env["SOURCE_PG_USER"], self.base_env["ANALYTICS_PG_USER"]
        print(f"[{scale}] building the workload: N={copies} ...", flush=True)
        create_databases([SOURCE_DB, ANALYTICS_DB], reader, owner)
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
        tables = ["orders", "order_lines"]
        partitions = {  # the load's tables: the day's partitions the extract jobs publish
            "orders": (data_dir / "postgres" / "orders" / DAY, "orders"),
            "order_lines": (data_dir / "postgres" / "order_lines" / DAY, "order_lines"),
            "csv_order_details": (data_dir / "csv" / DAY, "order_details"),
        }

        def load_files() -> dict[str, str]:
            return {name: published_file(folder, table) for name, (folder, table) in partitions.items()}

        def ref(kind: str, **kwargs) -> tuple[list[str], dict[str, str]]:
            return ref_command(kind, ref_env, **kwargs)

        plan: list[Planned] = []

        def add(group: str, name: str, n: int | None, factory) -> None:
            plan.append(Planned(group, name, n, factory))

        if "extract" in groups:
            add("extract", "job extract-postgres", pg_rows, self.job("extract-postgres", env))
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
            add("csv", "job extract-csv", n_csv, self.job("extract-csv", env))
            add(
                "csv",
                "pyarrow bare read+write",
                n_csv,
                lambda: ref("bare-csv", csv=str(csv_path), out=fresh(refs / "bare")),
            )
        if "load" in groups:
            add("load", "job load", load_rows, self.job("load", env))
            add(
                "load",
                "psycopg pyarrow -> COPY",
                load_rows,
                lambda: ref("psycopg-load", files=load_files(), schema="ref_psycopg"),
            )
            add("load", "ADBC adbc_ingest", load_rows, lambda: ref("adbc-load", files=load_files(), schema="ref_adbc"))
            dlt_formats = [("dlt parquet (ADBC)", "parquet"), ("dlt csv (COPY)", "csv")]
            # dlt's default (row INSERTs) is ten times slower than its best already at the default
            # scale (75 s for 4.77 M rows): at 47.7 M rows it would take most of the run.
            if scale != "huge":
                dlt_formats.append(("dlt insert_values (default)", "insert_values"))
            for label, file_format in dlt_formats:
                add(
                    "load",
                    label,
                    load_rows,
                    lambda f=file_format: ref(
                        "dlt-load",
                        files=load_files(),
                        schema=f"dlt_{f}",
                        format=f,
                        pipelines_dir=fresh(refs / "dlt-load-pipelines"),
                    ),
                )
            if not {"extract", "csv"} <= groups:
                print(f"[{scale}] load needs the day's extracts: running them once (not timed) ...", flush=True)
                for name in ("extract-postgres", "extract-csv"):
                    sample = measure([self.nw, "--date", DAY, "run", name], env, logs / f"setup-{name}.log")
                    if not sample.ok:
                        sys.exit(f"{name} failed; see {logs / f'setup-{name}.log'}")
        return plan

    def plan_fixed(self, groups: set[str], work: Path) -> list[Planned]:
        """The groups whose inputs are the pipelines' own (the Northwind day, people, PADAM, ads)."""
        refs, logs = work / "refs", work / "logs"
        for d in (refs, logs):
            d.mkdir(parents=True, exist_ok=True)
        plan: list[Planned] = []
        if "day" in groups:
            plan += self.plan_day(work)
        if "startup" in groups:
            # Meltano alone, with the project's settings.
            env = self.job_env(work / "data")
            plan.append(Planned("startup", "meltano --version", None, lambda: ([self.meltano, "--version"], env)))
            plan.append(
                Planned(
                    "startup",
                    "meltano invoke tap-postgres-arrow --about",
                    None,
                    lambda: ([self.meltano, "invoke", "tap-postgres-arrow", "--about"], env),
                )
            )
        if "people" in groups:
            plan += self.plan_people(work, refs)
        if "padam" in groups:
            plan += self.plan_padam(work, refs)
        if "ads" in groups:
            plan += self.plan_ads(work, logs)
        return plan

    def plan_day(self, work: Path) -> list[Planned]:
        create_database(DAY_ANALYTICS_DB, self.base_env["ANALYTICS_PG_USER"])
        day_env = self.job_env(
            work / "day-data", SOURCE_PG_DATABASE="northwind", ANALYTICS_PG_DATABASE=DAY_ANALYTICS_DB
        )
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
            return [self.meltano, "run", "--full-refresh", "tap-postgres", "target-postgres"], stock_env

        nw_rows = northwind_rows()
        return [
            Planned("day", "job nw run daily (whole day)", nw_rows, self.job("daily", day_env)),
            Planned("day", "stock meltano run tap-postgres target-postgres", nw_rows, stock),
        ]

    def plan_people(self, work: Path, refs: Path) -> list[Planned]:
        """The people day (its steps on the same day each round, like the Northwind day) against
        pyarrow reading both files, joining, counting and writing the summary."""
        create_database(PEOPLE_DB, self.base_env["PEOPLE_PG_USER"])
        data_dir = work / "people-data"
        env = self.job_env(data_dir, PEOPLE_PG_DATABASE=PEOPLE_DB)
        people, places = PEOPLE_FILES / "people.csv", PEOPLE_FILES / "places.csv"
        rows = data_lines(people) + data_lines(places)
        job_summary = data_dir / "output" / DAY / "people" / "summary_output.json"
        ref_summary = refs / "people" / "summary_output.json"

        def reference():
            fresh(ref_summary.parent)
            return ref_command("people", env, people=str(people), places=str(places), out=str(ref_summary))

        return [
            Planned("people", "job nw run people-daily (whole day)", rows, self.job("people-daily", env)),
            Planned(
                "people",
                "pyarrow read, join, count -> summary JSON",
                rows,
                reference,
                check=lambda: same_bytes(job_summary, ref_summary),
            ),
        ]

    def plan_padam(self, work: Path, refs: Path) -> list[Planned]:
        """A PADAM year as the README runs it (insert_all_data.sh: per month generate, prepare,
        export), from empty databases and no bookmark every round, against the same rows
        generated by the project's generator and one SQL statement of stats per month."""
        data_dir, exports = work / "padam-data", work / "padam-exports"
        producer, keeper = self.base_env["PADAM_PROD_PG_USER"], self.base_env["PADAM_WH_PG_USER"]
        env = self.job_env(
            data_dir,
            PADAM_PROD_PG_DATABASE=PADAM_PROD_DB,
            PADAM_WH_PG_DATABASE=PADAM_WH_DB,
            PADAM_EXPORT_DIR=str(exports),
            RANDOM_MAIN_CONTROLLER=str(PADAM_CONTROLLER),
        )
        for name in ("YEAR", "MONTHS"):  # the script reads them: the whole year, given as its argument
            env.pop(name, None)
        ref_out = refs / "padam"

        def job():
            create_database(PADAM_PROD_DB, producer)
            create_database(PADAM_WH_DB, keeper)
            fresh(data_dir)
            fresh(exports)
            return [str(PROJECT / "scripts" / "insert_all_data.sh"), str(PADAM_YEAR)], env

        def reference():
            create_database(PADAM_REF_DB, producer)
            return ref_command(
                "padam",
                {**env, "PADAM_PROD_PG_DATABASE": PADAM_REF_DB},
                year=PADAM_YEAR,
                controller=PADAM_CONTROLLER,
                rows=PADAM_YEAR_ROWS,
                out=fresh(ref_out),
            )

        return [
            Planned("padam", f"job insert_all_data.sh {PADAM_YEAR} (C={PADAM_CONTROLLER})", PADAM_YEAR_ROWS, job),
            Planned(
                "padam",
                "psycopg generator + 1 SQL per month -> CSV",
                PADAM_YEAR_ROWS,
                reference,
                check=lambda: same_tree(exports, ref_out),
            ),
        ]

    def plan_ads(self, work: Path, logs: Path) -> list[Planned]:
        """One ads load against its own mock API and S3 server (started here on free ports, stopped
        at the end) and a scratch database, against requests + boto3 + psycopg doing the same."""
        create_database(ADS_DB, self.base_env["ADS_PG_USER"])
        env = self.job_env(
            work / "ads-data",
            ADS_PG_DATABASE=ADS_DB,
            ADS_API_URL=f"http://127.0.0.1:{free_port()}",
            ADS_S3_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}",
            ADS_S3_DATA_DIR=str(work / "ads-s3"),
            ADS_S3_BUCKET="ad-data",
            ADS_S3_REGION="us-east-1",
            # Keys of this scratch server alone (the configured ones may be AWS's, or unset).
            ADS_S3_ACCESS_KEY_ID="nw-bench",
            ADS_S3_SECRET_ACCESS_KEY=secrets.token_hex(16),
        )
        # Live: a new response on every call, as the real API (empty, not removed: .env is read again).
        env["ADS_API_FIXTURE"] = ""
        self.cleanups.append(lambda: self.stop_ads(env, logs))
        print("[ads] starting its mock API and S3 server (nw ads up) ...", flush=True)
        if not measure([self.nw, "ads", "up"], env, logs / "setup-ads-up.log").ok:
            sys.exit(f"nw ads up failed; see {logs / 'setup-ads-up.log'}")
        return [
            Planned(
                "ads",
                "job nw ads load (one API call)",
                ADS_RECORDS,
                lambda: ([self.nw, "ads", "load", "--date", DAY], env),
            ),
            Planned(
                "ads",
                "requests -> boto3 put -> psycopg insert",
                ADS_RECORDS,
                lambda: ref_command("ads", env, day=DAY, schema="ref_ads", records=ADS_RECORDS),
            ),
        ]

    def stop_ads(self, env: dict[str, str], logs: Path) -> None:
        with (logs / "teardown-ads-down.log").open("w") as out:
            subprocess.run([self.nw, "ads", "down"], env=env, cwd=PROJECT, stdout=out, stderr=subprocess.STDOUT)

    def run_plan(self, scale: str, plan: list[Planned], logs: Path) -> None:
        logs.mkdir(parents=True, exist_ok=True)
        rows = {p.name: Row(scale, p.group, p.name, p.rows) for p in plan}
        self.rows += rows.values()
        for round_no in range(1, self.args.rounds + 1):
            for p in plan:
                cmd, cmd_env = p.factory()
                slug = "".join(c if c.isalnum() else "-" for c in p.name)[:40]
                sample = measure(cmd, cmd_env, logs / f"r{round_no}-{slug}.log")
                if sample.ok and p.check is not None and (wrong := p.check()):
                    print(f"  FAILED the check of its output: {wrong}", file=sys.stderr)
                    sample.ok = False
                rows[p.name].samples.append(sample)
                status = ("" if sample.ok else "  FAILED") + ("  (waited for a lock)" if sample.waited else "")
                print(
                    f"[{scale}] round {round_no} {p.group:<8} {p.name:<48} {sample.wall:7.1f} s wall"
                    f" {sample.cpu:7.1f} s cpu {sample.rss_mb:7.0f} MB{status}",
                    flush=True,
                )


# --------------------------------------------------------------------------------------------
# The report: a table of medians, then the issue's targets, each met or not.
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


class Medians:
    """The run's rows, looked up by scale, group and the start of their name."""

    def __init__(self, rows: list[Row]) -> None:
        self.rows = rows

    def row(self, group: str, prefix: str, scale: str | None = None) -> Row | None:
        found = [r for r in self.rows if r.group == group and r.name.startswith(prefix) and scale in (None, r.scale)]
        return found[0] if found else None

    def reference(self, r: Row) -> Row | None:
        prefix = MAIN_REFERENCE.get(r.group)
        return None if prefix is None else self.row(r.group, prefix, r.scale)

    def dlt_best(self, group: str, scale: str) -> Row | None:
        """The fastest dlt run of the group (its median wall), if any dlt run succeeded."""
        found = [r for r in self.rows if r.group == group and r.scale == scale and r.name.startswith("dlt")]
        timed = [r for r in found if r.median("wall") is not None]
        return min(timed, key=lambda r: r.median("wall")) if timed else (found[0] if found else None)


def report(rows: list[Row]) -> str:
    m = Medians(rows)
    lines = [
        "| scale | group | run | rows | wall s | CPU s | CPU/wall | rows/s | peak RSS MB | x ref | x ADBC"
        " | x dlt best |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        w, cpu, rss = r.median("wall"), r.median("cpu"), r.median("rss_mb")
        ratios = []
        for other in (m.reference(r), m.row(r.group, "ADBC", r.scale), m.dlt_best(r.group, r.scale)):
            shown = r.is_job and other is not None
            ratios.append(_fmt(_ratio(w, other.median("wall")), ".2f") if shown else "")
        rate = f"{r.rows / w:,.0f}" if r.rows and w else ""
        count = f"{r.rows:,}" if r.rows else ""
        cores = _ratio(cpu, w)
        name = r.name + (f" (waited for a lock in {waits} of {len(r.samples)})" if (waits := r.waits) else "")
        lines.append(
            f"| {r.scale} | {r.group} | {name} | {count} | {_fmt(w, '.1f')} | {_fmt(cpu, '.1f')} "
            f"| {_fmt(cores, '.2f')} | {rate} | {_fmt(rss, '.0f')} | {' | '.join(ratios)} |"
        )
    return "\n".join(lines)


@dataclass(frozen=True)
class Verdict:
    target: str
    measured: str
    status: str  # MET, NOT_MET or NOT_MEASURED


MET, NOT_MET, NOT_MEASURED = "met", "NOT met", "not measured"


def _inputs(target: str, runs: dict[str, Row | None]) -> Verdict | None:
    missing = [name for name, r in runs.items() if r is None]
    if missing:
        return Verdict(target, f"not measured (not in this run: {', '.join(missing)})", NOT_MEASURED)
    failed = [name for name, r in runs.items() if r.median("wall") is None]
    if failed:
        return Verdict(target, f"not measured (failed: {', '.join(failed)})", NOT_MEASURED)
    return None


def _judge(target: str, value: float, limit: float, measured: str, strictly_below: bool = False) -> Verdict:
    ok = value < limit if strictly_below else value <= limit
    return Verdict(target, measured, MET if ok else NOT_MET)


def ratio_target(
    target: str, job: Row | None, ref: Row | None, ref_name: str, limit: float, strictly_below: bool = False
) -> Verdict:
    if unmeasured := _inputs(target, {"the job": job, ref_name: ref}):
        return unmeasured
    a, b = job.median("wall"), ref.median("wall")
    return _judge(target, a / b, limit, f"{a / b:.2f}x (job {a:.1f} s, {ref.name} {b:.1f} s)", strictly_below)


def seconds_target(target: str, job: Row | None, ref: Row | None, limit: float) -> Verdict:
    if unmeasured := _inputs(target, {"the job": job}):
        return unmeasured
    w = job.median("wall")
    versus = ref.median("wall") if ref is not None else None
    measured = f"{w:.1f} s" + (f" ({w / versus:.1f}x its reference's {versus:.1f} s)" if versus else "")
    return _judge(target, w, limit, measured)


def rss_target(target: str, job: Row | None) -> Verdict:
    if unmeasured := _inputs(target, {"the job": job}):
        return unmeasured
    rss = job.median("rss_mb")
    return _judge(target, rss, RSS_LIMIT_MB, f"{rss:.0f} MB")


def growth_target(target: str, small: Row | None, big: Row | None) -> Verdict:
    """Peak RSS may grow 1.2x per 10x rows (so 1.44x for 100x)."""
    if unmeasured := _inputs(target, {"the smaller scale": small, "the larger scale": big}):
        return unmeasured
    a, b = small.median("rss_mb"), big.median("rss_mb")
    rows = (big.rows or 1) / (small.rows or 1)
    limit = RSS_GROWTH_PER_10X ** round(math.log10(rows))
    return _judge(
        target, b / a, limit, f"{a:.0f} -> {b:.0f} MB: x{b / a:.2f} for x{rows:.1f} rows (limit x{limit:.2f})"
    )


def cores_target(target: str, job: Row | None) -> Verdict:
    if unmeasured := _inputs(target, {"the job": job}):
        return unmeasured
    w, cpu = job.median("wall"), job.median("cpu")
    return Verdict(target, f"{cpu / w:.2f} ({cpu:.1f} s CPU / {w:.1f} s wall)", MET if cpu / w > 1.0 else NOT_MET)


def evaluate_targets(rows: list[Row]) -> list[Verdict]:
    """Issue 26's targets, every one, from the medians of this run's rows."""
    m = Medians(rows)
    el = (("extract", "job extract-postgres", "extract-postgres"), ("load", "job load", "load"))
    scaled = (*el[:1], ("csv", "job extract-csv", "extract-csv"), *el[1:])
    out = [
        ratio_target(
            "Northwind day: `nw run daily` <= 2.5x the stock `meltano run tap-postgres target-postgres`",
            m.row("day", "job"),
            m.row("day", "stock"),
            "the stock run",
            2.5,
        )
    ]
    for group, job, label in el:
        out.append(
            ratio_target(
                f"default scale: {label} <= 2x ADBC alone",
                m.row(group, job, "default"),
                m.row(group, "ADBC", "default"),
                "ADBC",
                2.0,
            )
        )
        out.append(
            ratio_target(
                f"default scale: {label} <= 0.8x dlt's best (ahead by 20%)",
                m.row(group, job, "default"),
                m.dlt_best(group, "default"),
                "dlt",
                0.8,
            )
        )
    out.append(
        ratio_target(
            "default scale: extract-csv <= 5x pyarrow's bare read+write",
            m.row("csv", "job", "default"),
            m.row("csv", "pyarrow", "default"),
            "pyarrow",
            5.0,
        )
    )
    for group, job, label in el:
        out.append(
            ratio_target(
                f"small scale: {label} <= 1.0x dlt's best",
                m.row(group, job, "small"),
                m.dlt_best(group, "small"),
                "dlt",
                1.0,
            )
        )
    for group, label, limit in PIPELINE_SECONDS:
        job = m.row(group, "job")
        out.append(seconds_target(f"{label} <= {limit:g} s", job, m.reference(job) if job else None, limit))
    for group, job, label in el:
        out.append(
            ratio_target(
                f"huge scale: {label} ahead of dlt's best (< 1x)",
                m.row(group, job, "huge"),
                m.dlt_best(group, "huge"),
                "dlt",
                1.0,
                strictly_below=True,
            )
        )
    for scale in SCALES:
        for group, job, label in scaled:
            out.append(rss_target(f"{scale} scale: {label} peak RSS <= {RSS_LIMIT_MB} MB", m.row(group, job, scale)))
    for group, label, _ in (("day", "Northwind day", None), *PIPELINE_SECONDS):
        out.append(rss_target(f"{label}: peak RSS <= {RSS_LIMIT_MB} MB", m.row(group, "job")))
    for small, big in itertools.pairwise(SCALES):
        for group, job, label in scaled:
            out.append(
                growth_target(
                    f"{small} -> {big}: {label} peak RSS grows <= {RSS_GROWTH_PER_10X}x per 10x rows",
                    m.row(group, job, small),
                    m.row(group, job, big),
                )
            )
    for group, job, label in scaled:
        out.append(
            cores_target(
                f"huge scale: {label} uses both cores (CPU s per wall s > 1; issue point 3)", m.row(group, job, "huge")
            )
        )
    return out


def format_targets(verdicts: list[Verdict], rounds: int) -> str:
    counts = {s: sum(v.status == s for v in verdicts) for s in (MET, NOT_MET, NOT_MEASURED)}
    lines = [
        f"Targets (issue 26), from the medians of this run ({rounds} round{'s' if rounds != 1 else ''}; "
        f"the issue's are medians of 3): {counts[MET]} met, {counts[NOT_MET]} not met, "
        f"{counts[NOT_MEASURED]} not measured",
        "",
        "| target | measured | |",
        "|---|---|---|",
    ]
    lines += [f"| {v.target} | {v.measured} | {v.status} |" for v in verdicts]
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
    # Scratch state only: the lake in each run's data directory and a local ledger, never the
    # configured bucket or shared state (the runs commit the day DAY). Set empty, not removed:
    # nw and Meltano would read them from .env again.
    base_env |= {"NW_LAKE_URL": "", "NW_STATE_BACKEND": "local"}
    base_env["PATH"] = f"{VENV_BIN}:{base_env.get('PATH', '')}"
    work = Path(tempfile.mkdtemp(prefix="nw-bench-"))
    bench = Bench(args, work, base_env)
    started = time.monotonic()
    header = f"machine: {machine()}\ncommand: {' '.join([sys.executable, *sys.argv])}"
    print(header, flush=True)
    try:
        for i, scale in enumerate(scales):
            bench.run_scale(scale, groups, with_fixed=i == 0)
    finally:
        for cleanup in bench.cleanups:
            cleanup()
        if args.keep:
            print(f"kept: {work}, databases {', '.join(SCRATCH_DATABASES)}")
        else:
            drop_databases(list(SCRATCH_DATABASES))
            shutil.rmtree(work, ignore_errors=True)
    print()
    print(header)
    print(f"rounds: {args.rounds} (median shown), total {time.monotonic() - started:.0f} s; day {DAY}")
    print()
    print(report(bench.rows))
    print()
    print(format_targets(evaluate_targets(bench.rows), args.rounds))


if __name__ == "__main__":
    main()
