"""Benchmark the extract and load steps at scale, through the real Meltano jobs.

    .venv/bin/python scripts/benchmark.py --rows 1000000

Needs the embedded server (`make db`). It creates a scratch source database
`northwind_bench` holding one wide table of N generated rows, points the pipeline at
it and at a scratch analytics database, runs extract-postgres, extract-csv and load for
one day into a temporary data directory, and prints rows, seconds and rows/second per
step, from the run ledger. The project's own databases and data/ are not touched.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from psycopg import sql

from northwind_elt import embedded, settings

PROJECT = Path(__file__).resolve().parent.parent
DAY = "2024-01-15"


def prepare(rows: int, source_db: str, analytics_db: str) -> None:
    reader, owner = settings.source_pg().user, settings.analytics_pg().user
    with embedded.admin_connect() as conn:
        for name in (source_db, analytics_db):
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(source_db)))
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(analytics_db), sql.Identifier(owner)))
    with embedded.admin_connect(source_db) as conn:
        conn.execute(
            """
            CREATE TABLE order_lines AS
            SELECT g AS line_id,
                   (g %% 11000)::smallint AS order_id,
                   (g %% 77)::smallint AS product_id,
                   (g %% 1000)::real / 10 AS unit_price,
                   (g %% 50)::smallint AS quantity,
                   ((g %% 5) * 0.05)::real AS discount,
                   DATE '1996-07-04' + (g %% 700) AS order_date,
                   md5(g::text) AS note
            FROM generate_series(1, %s) AS g
            """,
            [rows],
        )
        conn.execute(
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(source_db), sql.Identifier(reader))
        )
        conn.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(sql.Identifier(reader)))


def run(job: str, env: dict[str, str]) -> float:
    started = time.monotonic()
    result = subprocess.run(
        [str(PROJECT / ".venv" / "bin" / "nw"), "--date", DAY, "run", job],
        env=env,
        cwd=PROJECT,
        capture_output=True,
        text=True,
    )
    if result.returncode:
        sys.exit(f"{job} failed:\n{result.stderr[-3000:]}")
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="nw-bench-"))
    prepare(args.rows, "northwind_bench", "analytics_bench")
    env = {
        **os.environ,
        "NW_DATA_DIR": str(data_dir),
        "SOURCE_PG_DATABASE": "northwind_bench",
        "ANALYTICS_PG_DATABASE": "analytics_bench",
        "MELTANO_DATABASE_URI": f"sqlite:///{data_dir / 'meltano.db'}",
    }
    wall = {job: run(job, env) for job in ("extract-postgres", "extract-csv", "load")}
    ledger = sqlite3.connect(data_dir / "ledger.sqlite")
    print(f"{'step':<18}{'rows':>10}{'step s':>9}{'wall s':>9}{'rows/s':>11}")
    for step, seconds in wall.items():
        rows, duration = ledger.execute(
            "SELECT rows, duration_s FROM runs WHERE step = ? AND status = 'success' ORDER BY id DESC LIMIT 1", [step]
        ).fetchone()
        print(f"{step:<18}{rows:>10}{duration:>9.1f}{seconds:>9.1f}{rows / seconds:>11.0f}")
    print(f"(data in {data_dir}; 'step s' is from the ledger, 'wall s' includes Meltano's start-up)")


if __name__ == "__main__":
    main()
