"""PADAM end to end: scripts/insert_all_data.sh for 2022 at controller 1, then its pitfalls.

Expected values are aggregated here, in Python, from the generator's rows (whose stream is
pinned by the spec's hashes in tests/unit/test_padam_generator.py), never read back from
the warehouse. The tests run in file order and share the year the first one builds.
"""

from __future__ import annotations

import calendar
import csv
import datetime as dt
import hashlib
import os
import re
import signal
import sqlite3
import subprocess
from collections import defaultdict
from pathlib import Path

import psutil
import pytest
from s3_support import BUCKET, EmbeddedS3, local_files
from support import PROJECT, Pipeline, wait_for

from northwind_elt.pipelines.padam.generator import month_rows
from northwind_elt.pipelines.padam.staleness import MARKER

YEAR = 2022
SCRIPT = PROJECT / "scripts" / "insert_all_data.sh"
SPEC_ROWS_2022_C1 = 7_374  # specs/padam.md §2


class Stats:
    """count, sum, min, max of the values of one group."""

    def __init__(self) -> None:
        self.count, self.sum, self.min, self.max = 0, 0, None, None

    def add(self, value: int) -> None:
        self.count += 1
        self.sum += value
        self.min = value if self.min is None else min(self.min, value)
        self.max = value if self.max is None else max(self.max, value)

    def merge(self, other: Stats) -> None:
        self.count += other.count
        self.sum += other.sum
        self.min = other.min if self.min is None else min(self.min, other.min)
        self.max = other.max if self.max is None else max(self.max, other.max)


def expected(year: int, controllers: dict[int, int] | None = None) -> tuple[dict, dict, dict]:
    """(daily, monthly, year-to-date) Stats from the generator's rows; month -> C (default 1)."""
    daily: dict[tuple[int, int], Stats] = defaultdict(Stats)
    monthly: dict[int, Stats] = defaultdict(Stats)
    for month in range(1, 13):
        for created_at, value in month_rows(year, month, (controllers or {}).get(month, 1)):
            daily[(created_at.month, created_at.day)].add(value)
            monthly[created_at.month].add(value)
    ytd, running = {}, Stats()
    for month in range(1, 13):
        running.merge(monthly[month])
        ytd[month] = Stats()
        ytd[month].merge(running)
    return daily, monthly, ytd


def read_single_row(path: Path) -> dict[str, str]:
    with path.open(newline="", encoding="ascii") as handle:
        rows = list(csv.reader(handle))
    assert len(rows) == 2, f"{path}: {len(rows)} lines"
    return dict(zip(rows[0], rows[1], strict=True))


def assert_stats(path: Path, stats: Stats, keys: dict[str, int]) -> None:
    row = read_single_row(path)
    assert list(row) == [*keys, "sum_values", "min_values", "max_values", "mean_values"], path
    for key, value in keys.items():
        assert row[key] == str(value), (path, key)
    assert (row["sum_values"], row["min_values"], row["max_values"]) == (
        str(stats.sum),
        str(stats.min),
        str(stats.max),
    ), path
    mean = stats.sum / stats.count
    # The shortest text that reads back as the exact double mean (Postgres float8 output).
    assert float(row["mean_values"]) == mean, path
    assert row["mean_values"] == (str(int(mean)) if mean.is_integer() else repr(mean)), path


def snapshot(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def export_files(root: Path) -> dict[str, str]:
    """The snapshot of the export files alone, without the _STALE markers beside them."""
    return {name: digest for name, digest in snapshot(root).items() if Path(name).name != MARKER}


def markers(root: Path) -> list[str]:
    return sorted(path.relative_to(root).as_posix() for path in root.rglob(MARKER))


def stats_of(rows: list[tuple[dt.datetime, int]]) -> Stats:
    stats = Stats()
    for _, value in rows:
        stats.add(value)
    return stats


@pytest.fixture(scope="module")
def padam(pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    exports = tmp_path_factory.mktemp("padam-exports")
    env = {**pipeline.env, "RANDOM_MAIN_CONTROLLER": "1", "PADAM_EXPORT_DIR": str(exports)}
    return Pipeline(env=env, data_dir=pipeline.data_dir)


@pytest.fixture(scope="module")
def exports(padam: Pipeline) -> Path:
    return Path(padam.env["PADAM_EXPORT_DIR"])


def script(padam: Pipeline, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(SCRIPT), *args], env={**padam.env, **env}, cwd=PROJECT, capture_output=True, text=True, timeout=1200
    )


def per_month(padam: Pipeline, prefix: str, table: str) -> dict[tuple[int, int], tuple[int, int]]:
    with padam.connect(prefix) as conn:
        rows = conn.execute(
            f"SELECT extract(year FROM created_at)::int, extract(month FROM created_at)::int, count(*), "
            f"sum(value)::bigint FROM {table} GROUP BY 1, 2"
        ).fetchall()
    return {(y, m): (c, s) for y, m, c, s in rows}


def ok(result: subprocess.CompletedProcess) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    return output


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL `nw` and the Meltano job it runs in a process group of its own: a crash, not a stop."""
    groups = {proc.pid} | {os.getpgid(child.pid) for child in psutil.Process(proc.pid).children(recursive=True)}
    for group in groups:
        os.killpg(group, signal.SIGKILL)
    proc.wait()


def latest_prepare(padam: Pipeline) -> tuple[str, str, str | None]:
    """(unit, status, error) of the latest padam-prepare attempt in the ledger."""
    with sqlite3.connect(padam.data_dir / "ledger.sqlite") as conn:
        return conn.execute(
            "SELECT unit, status, error FROM step_runs WHERE pipeline = 'padam' AND step = 'padam-prepare'"
            " ORDER BY id DESC LIMIT 1"
        ).fetchone()


@pytest.fixture(scope="module")
def year_run(padam: Pipeline) -> subprocess.CompletedProcess:
    return script(padam, str(YEAR))


def test_a_year_at_controller_1_writes_378_files_equal_to_an_independent_aggregation(
    padam: Pipeline, exports: Path, year_run: subprocess.CompletedProcess
) -> None:
    output = ok(year_run)
    assert f"insert_all_data.sh: {YEAR} done in" in output
    files = sorted(p.relative_to(exports).as_posix() for p in exports.rglob("*") if p.is_file())
    assert len(files) == 1 + 12 + 365, files[:5]
    daily, monthly, ytd = expected(YEAR)
    assert sum(s.count for s in monthly.values()) == SPEC_ROWS_2022_C1
    year_dir = exports / f"year={YEAR}"
    assert_stats(year_dir / f"entity_stats_yearly_{YEAR}.csv", ytd[12], {"year": YEAR})
    for month in range(1, 13):
        month_dir = year_dir / f"month={month}"
        assert_stats(
            month_dir / f"entity_stats_monthly_{YEAR}_{month}.csv", monthly[month], {"year": YEAR, "month": month}
        )
        for day in range(1, calendar.monthrange(YEAR, month)[1] + 1):
            path = month_dir / f"day={day}" / f"entity_stats_daily_{YEAR}_{month}_{day}.csv"
            assert_stats(path, daily[(month, day)], {"year": YEAR, "month": month, "day": day})


def test_rollups_add_up_and_each_months_midnight_row_is_in_its_month(
    padam: Pipeline, exports: Path, year_run: subprocess.CompletedProcess
) -> None:
    ok(year_run)
    year_dir = exports / f"year={YEAR}"
    yearly = read_single_row(year_dir / f"entity_stats_yearly_{YEAR}.csv")
    months = [read_single_row(year_dir / f"month={m}" / f"entity_stats_monthly_{YEAR}_{m}.csv") for m in range(1, 13)]
    assert sum(int(m["sum_values"]) for m in months) == int(yearly["sum_values"])
    assert min(int(m["min_values"]) for m in months) == int(yearly["min_values"])
    assert max(int(m["max_values"]) for m in months) == int(yearly["max_values"])
    for month, row in enumerate(months, start=1):
        days = [read_single_row(p) for p in (year_dir / f"month={month}").glob("day=*/*.csv")]
        assert sum(int(d["sum_values"]) for d in days) == int(row["sum_values"])
        assert min(int(d["min_values"]) for d in days) == int(row["min_values"])
        assert max(int(d["max_values"]) for d in days) == int(row["max_values"])
    # The generator's first row of every month is at exactly 00:00:00 on the 1st: the
    # warehouse holds it, and it counts in its own month (no time zone shifted it).
    with padam.connect("PADAM_WH_PG") as conn:
        firsts = conn.execute(
            "SELECT created_at FROM padam_raw.entity WHERE created_at = date_trunc('month', created_at) "
            "AND extract(year FROM created_at) = %s ORDER BY 1",
            [YEAR],
        ).fetchall()
    assert [r[0] for r in firsts] == [dt.datetime(YEAR, m, 1) for m in range(1, 13)]
    assert per_month(padam, "PADAM_WH_PG", "padam_raw.entity") == per_month(padam, "PADAM_PROD_PG", "entity")


def test_a_month_exported_to_the_lake_in_a_bucket_is_byte_identical_to_one_on_disk(
    padam: Pipeline, year_run: subprocess.CompletedProcess, embedded_s3: EmbeddedS3, tmp_path: Path
) -> None:
    """With NW_LAKE_URL on the embedded S3 and no PADAM_EXPORT_DIR, the files go to padam/exports in
    the bucket, byte for byte those written to a folder."""
    ok(year_run)
    on_disk = tmp_path / "exports"
    ok(padam.nw("padam", "export", str(YEAR), "3", extra_env={"PADAM_EXPORT_DIR": str(on_disk)}))
    in_bucket = {"PADAM_EXPORT_DIR": "", **embedded_s3.lake_env("padam-lake")}
    said = ok(padam.nw("padam", "export", str(YEAR), "3", extra_env=in_bucket))
    assert f"files under s3://{BUCKET}/padam-lake/padam/exports/year={YEAR}" in said
    written = local_files(on_disk)
    assert len(written) == 1 + 1 + 31
    assert embedded_s3.objects("padam-lake/padam/exports/") == written


def test_a_second_preparation_loads_no_new_row(padam: Pipeline, year_run: subprocess.CompletedProcess) -> None:
    ok(year_run)
    output = ok(padam.nw("padam", "prepare"))
    # The inclusive bookmark re-reads the last row; it replaces itself, nothing is added.
    assert ": 0 new, 1 replaced; the warehouse holds 7,374 rows" in output, output
    with padam.connect("PADAM_WH_PG") as conn:
        assert conn.execute("SELECT count(*) FROM padam_raw.entity").fetchone()[0] == SPEC_ROWS_2022_C1
        assert conn.execute("SELECT sum(count_values) FROM padam.entity_stats_daily").fetchone()[0] == 7374
    # `nw status` shows PADAM as its months, reconciled.
    status = ok(padam.nw("status", "--last", "12"))
    months = [line for line in status.splitlines() if re.match(rf"\s*{YEAR}-\d\d\s", line)]
    assert len(months) == 12 and all(re.search(r"\sok\s+done$", line) for line in months), status


def test_a_signal_stops_a_preparation_whole_and_an_export_waits_for_it_while_a_second_one_is_refused(
    padam: Pipeline, exports: Path, year_run: subprocess.CompletedProcess
) -> None:
    ok(year_run)
    before = snapshot(exports)
    holder = padam.admin("padam_warehouse")
    try:
        # The merge's lock: the preparation lands the bookmark's last row, then waits here.
        holder.execute("SELECT pg_advisory_lock(%s, 1)", [0x50414441])
        proc = padam.start("padam", "prepare")
        wait_for(lambda: padam.waiting_on_a_lock("padam_warehouse"), "the merge waiting for its lock", proc)
        second = padam.nw("padam", "prepare")
        assert second.returncode != 0 and "padam prepare is already running (lock " in second.stderr, second.stderr
        export = padam.start("padam", "export", str(YEAR), "12")
        waiting = export.stdout.readline()
        assert waiting.startswith("padam export: waiting for the running padam prepare (or export) to finish"), waiting
        assert export.poll() is None

        children = psutil.Process(proc.pid).children(recursive=True)
        assert children, "nw should be running meltano and its plugins"
        proc.send_signal(signal.SIGTERM)  # to nw alone, as Airflow or systemd would
        output, _ = proc.communicate(timeout=300)
        alive = [child for child in children if child.is_running() and child.status() != psutil.STATUS_ZOMBIE]
    finally:
        holder.close()
    assert proc.returncode == 128 + signal.SIGTERM, output[-3000:]
    assert alive == [], f"processes outlived nw: {alive}"
    assert "INTERRUPTED: padam prepare (SIGTERM)" in output and "Rerun: nw padam prepare" in output, output
    assert "Traceback" not in output
    assert latest_prepare(padam) == (f"{YEAR}-12", "interrupted", "stopped by SIGTERM")

    # The export ran once the preparation was gone, from the unchanged warehouse.
    exported, _ = export.communicate(timeout=300)
    assert export.returncode == 0 and f"padam export: {YEAR}-12: " in exported, exported
    assert snapshot(exports) == before

    rerun = ok(padam.nw("padam", "prepare"))
    assert f"padam prepare: run --force padam-prepare (log: {padam.data_dir / 'logs' / 'padam'}/" in rerun, rerun
    assert latest_prepare(padam) == (f"{YEAR}-12", "success", None)
    assert per_month(padam, "PADAM_WH_PG", "padam_raw.entity") == per_month(padam, "PADAM_PROD_PG", "entity")


def test_regenerated_months_and_a_rerun_of_the_script_leave_every_export_byte_identical(
    padam: Pipeline, exports: Path, year_run: subprocess.CompletedProcess
) -> None:
    ok(year_run)
    before = snapshot(exports)
    # June regenerated behind the bookmark (new entity_ids, same content), then the script
    # again for December (regenerated, its last row re-read under a new id).
    ok(padam.nw("padam", "insert-month", str(YEAR), "6"))
    output = ok(script(padam, str(YEAR), MONTHS="12"))
    assert ": 0 new, 1 replaced;" in output, output
    assert snapshot(exports) == before


def test_months_changed_behind_the_bookmark_are_refused_then_reloaded(
    padam: Pipeline, exports: Path, year_run: subprocess.CompletedProcess
) -> None:
    ok(year_run)
    before = snapshot(exports)
    assert markers(exports) == []
    # March regenerated with another controller, and a month older than the bookmark loaded late.
    ok(padam.nw("padam", "insert-month", str(YEAR), "3", extra_env={"RANDOM_MAIN_CONTROLLER": "2"}))
    ok(padam.nw("padam", "insert-month", str(YEAR - 1), "12"))

    refused = padam.nw("padam", "export", str(YEAR), "12")
    assert refused.returncode != 0
    assert f"{YEAR}-12 is not fully prepared" in refused.stderr and f"{YEAR}-03: production" in refused.stderr
    assert "Then rerun: nw padam prepare && nw padam export 2022 12" in refused.stderr
    assert export_files(exports) == before  # no export file written (the markers below are new)
    # March's files (and the year to date, which holds March) no longer match production: marked.
    assert markers(exports) == [f"year={YEAR}/{MARKER}", f"year={YEAR}/month=3/{MARKER}"]
    reconcile = padam.nw("padam", "reconcile")
    assert reconcile.returncode == 1 and "stale" in reconcile.stdout

    output = ok(padam.nw("padam", "prepare"))
    # The Meltano job's merge refused (naming both months and the full refresh), then
    # `nw padam prepare` reloaded every month.
    assert f"{YEAR}-03: production" in output and f"{YEAR - 1}-12: production" in output, output
    assert "nw padam prepare --full-refresh" in output
    assert "done (stale months reloaded with a full refresh)" in output
    assert per_month(padam, "PADAM_WH_PG", "padam_raw.entity") == per_month(padam, "PADAM_PROD_PG", "entity")

    ok(padam.nw("padam", "export", str(YEAR), "3"))
    daily, monthly, ytd = expected(YEAR, {3: 2})
    year_dir = exports / f"year={YEAR}"
    assert_stats(year_dir / "month=3" / f"entity_stats_monthly_{YEAR}_3.csv", monthly[3], {"year": YEAR, "month": 3})
    assert_stats(
        year_dir / "month=3" / "day=31" / f"entity_stats_daily_{YEAR}_3_31.csv",
        daily[(3, 31)],
        {"year": YEAR, "month": 3, "day": 31},
    )
    assert_stats(year_dir / f"entity_stats_yearly_{YEAR}.csv", ytd[3], {"year": YEAR})

    # Back to controller 1 with the documented full refresh: every file as before.
    ok(padam.nw("padam", "insert-month", str(YEAR), "3"))
    ok(padam.nw("padam", "prepare", "--full-refresh"))
    ok(padam.nw("padam", "export", str(YEAR), "3"))
    ok(padam.nw("padam", "export", str(YEAR), "12"))
    assert snapshot(exports) == before


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (("2022", "13"), {}, "MONTH must be a whole number from 1 to 12, got '13'"),
        (("2022", "0"), {}, "MONTH must be a whole number from 1 to 12, got '0'"),
        (("twenty", "1"), {}, "YEAR must be a whole number"),
        (
            ("2022", "1"),
            {"RANDOM_MAIN_CONTROLLER": "0"},
            "RANDOM_MAIN_CONTROLLER must be a whole number from 1 to 1666",
        ),
        (("2022", "1"), {"RANDOM_MAIN_CONTROLLER": "1667"}, "got '1667'"),
        (("2022", "1"), {"RANDOM_MAIN_CONTROLLER": "1.5"}, "got '1.5'"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_deleted(
    padam: Pipeline, year_run: subprocess.CompletedProcess, args: tuple[str, str], env: dict[str, str], message: str
) -> None:
    ok(year_run)
    before = per_month(padam, "PADAM_PROD_PG", "entity")
    result = padam.nw("padam", "insert-month", *args, extra_env=env)
    assert result.returncode != 0
    assert message in result.stderr and "nothing was changed" in result.stderr, result.stderr
    assert per_month(padam, "PADAM_PROD_PG", "entity") == before


def test_the_script_refuses_a_missing_or_bad_year(padam: Pipeline) -> None:
    for args, env, message in (
        ((), {}, "usage:"),
        (("20x",), {}, "YEAR must be a whole number"),
        ((), {"YEAR": "0"}, "YEAR must"),
    ):
        result = script(padam, *args, **env)
        assert result.returncode == 2 and message in result.stderr, result.stderr


def test_export_of_a_month_never_generated_is_refused(padam: Pipeline, exports: Path) -> None:
    result = padam.nw("padam", "export", "1999", "5")
    assert result.returncode != 0
    assert "1999-5 has no rows in production; nothing was written" in result.stderr
    assert "nw padam insert-month 1999 5" in result.stderr
    assert not (exports / "year=1999").exists()


def test_the_generator_killed_between_delete_and_insert_leaves_the_month_as_before(
    padam: Pipeline, year_run: subprocess.CompletedProcess
) -> None:
    ok(year_run)
    month = (YEAR, 5)
    before = per_month(padam, "PADAM_PROD_PG", "entity")[month]
    blocker = padam.admin("padam_production", autocommit=False)
    try:
        # An uncommitted row holding the id the generator's first inserted row will get:
        # its COPY waits on that row's lock after the DELETE ran, in the same transaction.
        taken = blocker.execute("SELECT nextval('entity_entity_id_seq')").fetchone()[0]
        blocker.execute("INSERT INTO entity (entity_id, created_at, value) VALUES (%s, '1900-01-01', 0)", [taken + 1])
        proc = padam.start("padam", "insert-month", *map(str, month))
        wait_for(lambda: padam.waiting_on_a_lock("padam_production"), "the generator waiting after its DELETE", proc)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        blocker.rollback()
        blocker.close()

    def generator_gone() -> bool:
        with padam.admin("postgres") as conn:
            return (
                conn.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = 'padam_production'").fetchone()[0]
                == 0
            )

    wait_for(generator_gone, "the killed generator's session to end")
    assert per_month(padam, "PADAM_PROD_PG", "entity")[month] == before


def test_a_preparation_killed_between_load_and_merge_leaves_the_warehouse_consistent_and_a_rerun_completes_it(
    padam: Pipeline, exports: Path, year_run: subprocess.CompletedProcess
) -> None:
    ok(year_run)
    ok(padam.nw("padam", "insert-month", str(YEAR + 1), "1"))
    stored_before = per_month(padam, "PADAM_WH_PG", "padam_raw.entity")
    holder = padam.admin("padam_warehouse")
    try:
        # The merge's lock: the run lands January (and saves its bookmark), then waits here.
        holder.execute("SELECT pg_advisory_lock(%s, 1)", [0x50414441])
        proc = padam.start("padam", "prepare")
        wait_for(lambda: padam.waiting_on_a_lock("padam_warehouse"), "the merge waiting for its lock", proc)
        kill_tree(proc)
    finally:
        holder.close()  # releases the lock; the killed merge's session finds its client gone

    def warehouse_sessions_gone() -> bool:
        with padam.admin("postgres") as conn:
            return (
                conn.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = 'padam_warehouse'").fetchone()[0]
                == 0
            )

    wait_for(warehouse_sessions_gone, "the killed run's sessions to end")
    with padam.connect("PADAM_WH_PG") as conn:
        landed = conn.execute("SELECT count(*) FROM padam_landing.entity").fetchone()[0]
    produced = per_month(padam, "PADAM_PROD_PG", "entity")
    assert landed == produced[(YEAR + 1, 1)][0] + 1  # January, and December's last row again
    assert per_month(padam, "PADAM_WH_PG", "padam_raw.entity") == stored_before  # nothing merged
    refused = padam.nw("padam", "export", str(YEAR + 1), "1")
    assert refused.returncode != 0 and "is not fully prepared" in refused.stderr

    # January regenerated meanwhile (new entity_ids): the queued rows and the re-read one merge once.
    ok(padam.nw("padam", "insert-month", str(YEAR + 1), "1"))
    ok(padam.nw("padam", "prepare"))
    assert per_month(padam, "PADAM_WH_PG", "padam_raw.entity") == per_month(padam, "PADAM_PROD_PG", "entity")
    ok(padam.nw("padam", "export", str(YEAR + 1), "1"))
    _, monthly, _ = expected(YEAR + 1)
    assert_stats(
        exports / f"year={YEAR + 1}" / "month=1" / f"entity_stats_monthly_{YEAR + 1}_1.csv",
        monthly[1],
        {"year": YEAR + 1, "month": 1},
    )


def test_rows_deleted_from_an_exported_month_mark_its_files_stale_until_it_is_exported_again(
    padam: Pipeline, exports: Path, year_run: subprocess.CompletedProcess
) -> None:
    """Last of the module: it leaves 2022-05-10's afternoon deleted (production, warehouse and files agree)."""
    ok(year_run)
    before = snapshot(exports)
    assert markers(exports) == []
    month, day = 5, 10
    cut, end = dt.datetime(YEAR, month, day, 12), dt.datetime(YEAR, month, day + 1)
    generated = list(month_rows(YEAR, month, 1))
    kept = [(at, value) for at, value in generated if not cut <= at < end]
    with padam.connect("PADAM_PROD_PG") as conn:
        deleted = conn.execute("DELETE FROM entity WHERE created_at >= %s AND created_at < %s", (cut, end)).rowcount
    assert deleted == len(generated) - len(kept) > 0
    _, monthly, _ = expected(YEAR)
    month_after = stats_of(kept)
    day_after = stats_of([(at, value) for at, value in kept if at.day == day])
    year_dir = exports / f"year={YEAR}"
    month_dir = year_dir / f"month={month}"

    # The export is refused (as before) and now marks the files that describe the deleted rows.
    refused = padam.nw("padam", "export", str(YEAR), str(month))
    assert refused.returncode != 0 and f"{YEAR}-{month} is not fully prepared" in refused.stderr, refused.stderr
    assert export_files(exports) == before  # no export file written
    assert markers(exports) == [f"year={YEAR}/{MARKER}", f"year={YEAR}/month={month}/{MARKER}"]
    assert "Exported files that no longer match production (marked _STALE):" in refused.stderr
    assert (
        f"{YEAR}-05: entity_stats_monthly_{YEAR}_{month}.csv: sum_values {monthly[month].sum} "
        f"(production {month_after.sum})"
    ) in refused.stderr, refused.stderr
    assert f"daily files that differ: day {day}" in refused.stderr
    refresh = f"nw padam prepare && nw padam export {YEAR} {month}"
    assert f"marked: {month_dir / MARKER}; refresh: {refresh}" in refused.stderr
    marker = (month_dir / MARKER).read_text()
    assert marker.startswith(
        f"STALE: the files of {YEAR}-05 in this folder and its day=* folders no longer match production:\n"
    )
    assert f"Refresh them: {refresh}\n" in marker
    # The year-to-date file was written by December's export: December's export refreshes it.
    yearly_marker = (year_dir / MARKER).read_text()
    assert yearly_marker.startswith(f"STALE: entity_stats_yearly_{YEAR}.csv (the year to date) in this folder")
    assert f"Refresh it: nw padam prepare && nw padam export {YEAR} 12\n" in yearly_marker

    def month_states(report: str) -> dict[str, str]:
        return dict(re.findall(rf"^({YEAR}-\d\d)\s.*\s(\w+)$", report, re.M))

    reconcile = padam.nw("padam", "reconcile")
    assert reconcile.returncode == 1
    states = month_states(reconcile.stdout)
    assert states == {f"{YEAR}-{m:02d}": "export_stale" if m in (month, 12) else "ok" for m in range(1, 13)}, states
    assert f"2 exported folders no longer match production, marked {MARKER}:" in reconcile.stdout
    # nw status: the reconciled column (the refused export is the month's state, the year to date December's).
    status = ok(padam.nw("status", "--last", "24"))
    assert re.search(rf"^\s*{YEAR}-05\s.*\sexport_stale\s+failed at padam-export$", status, re.M), status
    assert re.search(rf"^\s*{YEAR}-12\s.*\sexport_stale\s+not reconciled \(export_stale\)$", status, re.M), status
    assert f"padam {YEAR}-12: not reconciled (export_stale) -> nw padam prepare" in status

    # Prepared: production, warehouse and published stats agree, but the files are still the old ones.
    ok(padam.nw("padam", "prepare"))
    reconcile = padam.nw("padam", "reconcile")
    assert reconcile.returncode == 1 and month_states(reconcile.stdout)[f"{YEAR}-05"] == "export_stale"
    pair = f"{month_after.count:,} / {month_after.sum:,}"
    assert re.search(rf"^{YEAR}-05\s+{pair}\s+{pair}\s+{pair}\s+export_stale$", reconcile.stdout, re.M)

    # Exported again: the markers are gone, the files hold production's stats.
    exported = ok(padam.nw("padam", "export", str(YEAR), str(month)))
    assert "no longer match production" not in exported
    assert markers(exports) == []
    assert_stats(month_dir / f"entity_stats_monthly_{YEAR}_{month}.csv", month_after, {"year": YEAR, "month": month})
    assert_stats(
        month_dir / f"day={day}" / f"entity_stats_daily_{YEAR}_{month}_{day}.csv",
        day_after,
        {"year": YEAR, "month": month, "day": day},
    )
    year_to_date = Stats()
    for m in range(1, 13):
        year_to_date.merge(month_after if m == month else monthly[m])
    ok(padam.nw("padam", "export", str(YEAR), "12"))
    assert_stats(year_dir / f"entity_stats_yearly_{YEAR}.csv", year_to_date, {"year": YEAR})
    reconcile = padam.nw("padam", "reconcile")
    assert reconcile.returncode == 0 and "export_stale" not in reconcile.stdout, reconcile.stdout
