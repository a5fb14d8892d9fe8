"""A hostile source beside the Northwind tables, in two real runs: the extract fails naming every
bad table and column and the SOURCE_PG_EXCLUDE_TABLES line that leaves them out; with that
line the day publishes its export, every row once, the exclusion in `nw status`."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from psycopg import sql
from support import Pipeline

DAY = "2024-08-21"  # a day no other test of the session extracts (test_audit has 2024-08-01)
EXCLUDE = "SOURCE_PG_EXCLUDE_TABLES"
VIEWS = "SOURCE_PG_INCLUDE_VIEWS"
PERCENT = "%" * 63  # 189 bytes once percent-encoded
CJK = "東京都渋谷区神宮前一丁目二番三号四五六七八"  # 21 characters, 63 bytes, 189 encoded
# A range-partitioned table: its rows must arrive once, through it.
PARTITIONS = {"t_p1": ((0, 10), [(1, 1), (2, 2)]), "t_p2": ((10, 20), [(3, 15)])}
# Columns that hold a value Arrow cannot represent, one bad value a row (the first stops the
# read; every one must be named), with the problem each is named with.
BAD_VALUES = {
    "amount": ("numeric(10,2)", "NaN", "holds NaN, which Arrow decimal128(10, 2) cannot represent"),
    "ts": (
        "timestamp without time zone",
        "infinity",
        "holds ±infinity or a timestamp past Arrow's int64-microsecond range",
    ),
    "d": ("date", "-infinity", "holds ±infinity, which Arrow date32 cannot represent"),
    "tstz": (
        "timestamp with time zone",
        "infinity",
        "holds ±infinity or a timestamp past Arrow's int64-microsecond range",
    ),
}
GOOD_VALUES = {"amount": "1.50", "ts": "2024-01-01", "d": "2024-01-01", "tstz": "2024-01-01 00:00:00+00"}
RESERVED = ("_day", "_load_id")  # columns the load adds to every row
ALREADY_EXCLUDED = "skip_me"
REVOKED = "secret"
VIEW, LISTED_VIEW = "v", "v_listed"


@dataclass
class Days:
    tables_before: set[str]
    failed_stderr: str
    failed_code: int
    visible_after_failure: list[Path]
    exclusion: str  # the value of the line the failure gave
    day_stdout: str
    status_day: str
    status_all: str
    log_text: str


def create_hostile_tables(pipeline: Pipeline) -> None:
    ident = sql.Identifier
    with pipeline.admin() as conn:
        conn.execute("CREATE TABLE t (id int, k int) PARTITION BY RANGE (k)")
        for name, ((low, high), rows) in PARTITIONS.items():
            conn.execute(
                sql.SQL("CREATE TABLE {} PARTITION OF t FOR VALUES FROM ({}) TO ({})").format(
                    ident(name), sql.Literal(low), sql.Literal(high)
                )
            )
            for row in rows:
                conn.execute("INSERT INTO t VALUES (%s, %s)", row)
        conn.execute(f"CREATE VIEW {VIEW} AS SELECT region_id FROM region")
        conn.execute(f"CREATE VIEW {LISTED_VIEW} AS SELECT region_id FROM region")
        columns = sql.SQL(", ").join(sql.SQL("{} " + kind).format(ident(c)) for c, (kind, _, _) in BAD_VALUES.items())
        conn.execute(sql.SQL("CREATE TABLE bad_values (id int, {})").format(columns))
        for i, bad in enumerate(BAD_VALUES, start=1):
            values = [BAD_VALUES[c][1] if c == bad else GOOD_VALUES[c] for c in BAD_VALUES]
            conn.execute(
                sql.SQL("INSERT INTO bad_values VALUES (%s, {})").format(
                    sql.SQL(", ").join(sql.Placeholder() * len(values))
                ),
                [i, *values],
            )
        conn.execute(sql.SQL("CREATE TABLE bad_day (id int, {} date, {} text)").format(*map(ident, RESERVED)))
        conn.execute("INSERT INTO bad_day VALUES (1, '2024-01-01', 'x')")
        for name, rows in ((PERCENT, [1, 2]), (CJK, [7]), (ALREADY_EXCLUDED, [1]), (REVOKED, [1])):
            conn.execute(sql.SQL("CREATE TABLE {} (id int)").format(ident(name)))
            for row in rows:
                # A literal, not a parameter: the name holds '%', which a query with parameters would read.
                conn.execute(sql.SQL("INSERT INTO {} VALUES ({})").format(ident(name), sql.Literal(row)))
        conn.execute(sql.SQL("REVOKE ALL ON {} FROM {}").format(ident(REVOKED), ident(pipeline.env["SOURCE_PG_USER"])))


def drop_hostile_tables(pipeline: Pipeline) -> None:
    with pipeline.admin() as conn:
        conn.execute(f"DROP VIEW IF EXISTS {VIEW}, {LISTED_VIEW}")
        for name in ("t", "bad_values", "bad_day", PERCENT, CJK, ALREADY_EXCLUDED, REVOKED):
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))


def source_tables(pipeline: Pipeline) -> set[str]:
    with pipeline.admin() as conn:
        rows = conn.execute(
            "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace"
            " AND relkind IN ('r', 'p') AND NOT relispartition"
        ).fetchall()
    return {row[0] for row in rows}


@pytest.fixture(scope="module")
def days(pipeline: Pipeline):
    """Two real runs: extract-postgres with one table already excluded (fails), then the whole
    day with the line its failure gave (and one view listed)."""
    tables_before = source_tables(pipeline)
    create_hostile_tables(pipeline)
    try:
        failed = pipeline.run("extract-postgres", DAY, extra_env={EXCLUDE: ALREADY_EXCLUDED})
        visible = sorted(pipeline.data_dir.glob(f"postgres/*/{DAY}/*"))
        visible += sorted(pipeline.data_dir.glob(f"_manifests/{DAY}/extract-postgres.json"))
        given = re.search(rf"^Fix: .*: {EXCLUDE}=(\S+)$", failed.stderr, re.MULTILINE)
        exclusion = given.group(1) if given else ""
        env = {EXCLUDE: exclusion, VIEWS: LISTED_VIEW}
        done = pipeline.run("daily", DAY, extra_env=env) if exclusion else failed
        logs = sorted((pipeline.data_dir / "logs" / DAY).glob("extract-postgres-*.log"))
        yield Days(
            tables_before=tables_before,
            failed_stderr=failed.stderr,
            failed_code=failed.returncode,
            visible_after_failure=visible,
            exclusion=exclusion,
            day_stdout=done.stdout + done.stderr,
            status_day=pipeline.nw("--date", DAY, "status", extra_env=env).stdout,
            status_all=pipeline.nw("status", extra_env=env).stdout,
            log_text="".join(log.read_text() for log in logs),
        )
    finally:
        drop_hostile_tables(pipeline)


def test_one_run_names_every_bad_table_and_every_bad_column_with_the_line_that_leaves_them_out(days: Days) -> None:
    assert days.failed_code != 0
    values = "; ".join(f"column {c} {kind}: {problem}" for c, (kind, _, problem) in BAD_VALUES.items())
    reserved = "; ".join(f"column {c}: the load adds a column of that name to every row of raw" for c in RESERVED)
    assert (
        f"Cause: extract-postgres for {DAY}: 2 source tables cannot be extracted: "
        f"'bad_day' ({reserved}), 'bad_values' ({values})\n"
    ) in days.failed_stderr
    line = f"{EXCLUDE}={','.join([ALREADY_EXCLUDED, 'bad_day', 'bad_values'])}"
    assert f"(in place of {EXCLUDE}={ALREADY_EXCLUDED}): {line}\n" in days.failed_stderr
    assert f"Fix the cause, then rerun: nw run --date {DAY} --from extract-postgres" in days.failed_stderr
    assert days.visible_after_failure == []  # the gate: nothing of the day is published


def test_with_that_line_the_day_publishes_its_export_and_status_shows_what_was_left_out(
    pipeline: Pipeline, days: Days
) -> None:
    assert days.exclusion == f"{ALREADY_EXCLUDED},bad_day,bad_values"
    done = f"==> done: northwind extract-postgres, extract-csv, load, transform, export for {DAY}"
    assert done in days.day_stdout, days.day_stdout[-3000:]
    for suffix in ("csv", "json"):
        assert pipeline.output(DAY, suffix).stat().st_size > 0
    noted = (
        f"excluded: {days.exclusion.replace(',', ', ')} ({EXCLUDE}); "
        f"skipped, the extraction role may not read them: {REVOKED}"
    )
    assert f"  extract-postgres: {noted}\n" in days.status_day
    assert "All steps done." in days.status_day
    assert f"  {DAY} extract-postgres: {noted}\n" in days.status_all
    manifest = json.loads((pipeline.data_dir / "_manifests" / DAY / "extract-postgres.json").read_text())
    assert manifest["excluded_tables"] == sorted(days.exclusion.split(","))
    assert manifest["unreadable_tables"] == [REVOKED]
    assert manifest["views"] == [LISTED_VIEW]
    warning = (
        f"WARNING: extract-postgres for {DAY}: skipping 1 table the extraction role "
        f"{pipeline.env['SOURCE_PG_USER']} may not read: {REVOKED}"
    )
    assert warning in days.log_text


def test_the_tables_published_are_the_ones_both_rules_choose_and_each_row_arrives_once(
    pipeline: Pipeline, days: Days
) -> None:
    """The tap's discovery and nw begin chose alike on this source (commit refuses a table one of
    them lacks); the set is the source's tables that are not partitions, with the listed view,
    less the excluded and the unreadable ones."""
    manifest = json.loads((pipeline.data_dir / "_manifests" / DAY / "extract-postgres.json").read_text())
    expected = (days.tables_before | {"t", PERCENT, CJK, LISTED_VIEW}) - {ALREADY_EXCLUDED, REVOKED}
    assert set(manifest["tables"]) == set(manifest["expected_tables"]) == expected
    with pipeline.analytics() as conn:
        in_raw = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'raw'")}
        in_raw |= {r[0] for r in conn.execute("SELECT relname FROM pg_class WHERE relnamespace = 'raw'::regnamespace")}
        for absent in (*PARTITIONS, VIEW, ALREADY_EXCLUDED, REVOKED, "bad_values", "bad_day"):
            assert absent not in in_raw, absent
        count = "SELECT count(*) FROM {} WHERE _day = {}"
        rows = {
            t: conn.execute(sql.SQL(count).format(sql.Identifier("raw", t), sql.Literal(DAY))).fetchone()[0]
            for t in ("t", PERCENT, CJK, LISTED_VIEW)
        }
        regions = conn.execute("SELECT count(*) FROM raw.region WHERE _day = %s", [DAY]).fetchone()[0]
    assert rows == {"t": sum(len(r) for _, r in PARTITIONS.values()), PERCENT: 2, CJK: 1, LISTED_VIEW: regions}
    assert manifest["tables"]["t"]["rows"] == 3


def test_names_of_63_percent_signs_and_21_cjk_characters_are_stored_within_the_file_name_limit(
    pipeline: Pipeline, days: Days
) -> None:
    for name in (PERCENT, CJK):
        partitions = [
            p
            for p in pipeline.data_dir.glob(f"postgres/*/{DAY}/*.manifest.json")
            if json.loads(p.read_text())["table"] == name
        ]
        assert len(partitions) == 1, name
        files = [partitions[0], partitions[0].with_name(json.loads(partitions[0].read_text())["file"])]
        assert all(f.exists() and len(f.name.encode()) <= 255 for f in files), files
