"""scripts/benchmark.py's own logic: its workload sizes, the report and issue 26's targets, from
hand-made medians (no run, no .venv-bench: the script imports only the standard library at the top).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from support import PROJECT

_spec = importlib.util.spec_from_file_location("benchmark_script", PROJECT / "scripts" / "benchmark.py")
bench = sys.modules["benchmark_script"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

ORDERS = 830  # the seeded Northwind orders


def row(scale: str, group: str, name: str, wall: float | None, rss: float = 150.0, cpu: float | None = None, rows=None):
    """A row whose median is `wall` (None: its one run failed)."""
    sample = bench.Sample(wall or 1.0, cpu if cpu is not None else (wall or 1.0) / 2, rss, wall is not None)
    return bench.Row(scale, group, name, rows, [sample])


def verdicts(rows: list) -> dict[str, object]:
    return {v.target: v for v in bench.evaluate_targets(rows)}


def find(found: dict[str, object], *words: str):
    [match] = [v for target, v in found.items() if all(w in target for w in words)]
    return match


def test_the_huge_scale_is_the_issues_27_7_m_source_rows_and_20_m_csv_rows() -> None:
    with (PROJECT / "data" / "order_details.csv").open() as handle:
        lines = sum(1 for _ in handle) - 1
    copies = bench.SCALES["huge"]
    assert (ORDERS + lines) * copies == 27_700_800
    assert lines * max(1, round(copies * bench.CSV_SHARE)) == 19_998_400
    # Every key still fits the widened integer order_id.
    assert 11_077 + (copies - 1) * bench.KEY_STEP < 2**31
    assert [bench.SCALES[s] * 10 for s in ("small", "default")] == [930, 9280]


def test_every_pipeline_is_a_group_with_a_reference() -> None:
    assert {"people", "padam", "ads"} <= set(bench.GROUPS)
    assert {"people", "padam", "ads"} <= set(bench.REFERENCES)
    assert {group for group, _, _ in bench.PIPELINE_SECONDS} == {"people", "padam", "ads"}
    assert set(bench.MAIN_REFERENCE) >= {"extract", "csv", "load", "day", "people", "padam", "ads"}


def test_targets_met_missed_and_not_measured() -> None:
    rows = [
        row("small", "extract", "job extract-postgres", 4.0, rss=170, rows=277_605),
        row("small", "extract", "ADBC -> Parquet", 0.6),
        row("small", "extract", "dlt sql_database/connectorx", 5.0),
        row("default", "extract", "job extract-postgres", 8.5, rss=180, rows=2_770_080),
        row("default", "extract", "ADBC -> Parquet", 3.0),
        row("default", "extract", "dlt sql_database/connectorx", 8.2),
        row("small", "day", "job nw run daily (whole day)", 10.0),
        row("small", "day", "stock meltano run tap-postgres target-postgres", 4.0),
        row("small", "people", "job nw run people-daily (whole day)", 9.0, rss=600),
        row("small", "people", "pyarrow read, join, count -> summary JSON", 0.5),
        row("small", "ads", "job nw ads load (one API call)", None),
        row("small", "ads", "requests -> boto3 put -> psycopg insert", 0.5),
    ]
    found = verdicts(rows)
    assert find(found, "Northwind day", "2.5x").status == bench.MET  # 2.5x: on the line
    assert find(found, "Northwind day", "2.5x").measured.startswith("2.50x")
    assert find(found, "default scale", "extract-postgres", "2x ADBC").status == bench.NOT_MET  # 2.83x
    assert find(found, "default scale", "extract-postgres", "0.8x").status == bench.NOT_MET  # 1.04x
    assert find(found, "small scale", "extract-postgres", "1.0x").status == bench.MET  # 0.8x
    assert find(found, "default scale", "load", "2x ADBC").status == bench.NOT_MEASURED
    assert "not in this run" in find(found, "default scale", "load", "2x ADBC").measured
    people = find(found, "people day", "<= 10 s")
    assert (people.status, people.measured) == (bench.MET, "9.0 s (18.0x its reference's 0.5 s)")
    ads = find(found, "ads load", "<= 6 s")
    assert (ads.status, ads.measured) == (bench.NOT_MEASURED, "not measured (failed: the job)")
    assert find(found, "PADAM", "<= 45 s").status == bench.NOT_MEASURED
    assert find(found, "people day", "RSS").status == bench.NOT_MET  # 600 MB
    assert find(found, "small scale", "extract-postgres", "RSS").status == bench.MET
    growth = find(found, "small -> default", "extract-postgres")
    assert growth.status == bench.MET  # 170 -> 180 MB
    assert "x1.06" in growth.measured and "limit x1.20" in growth.measured
    assert find(found, "default -> huge", "extract-postgres").status == bench.NOT_MEASURED
    assert find(found, "huge scale", "extract-postgres", "dlt").status == bench.NOT_MEASURED


def test_the_default_extract_ratio_to_adbc() -> None:
    rows = [
        row("default", "extract", "job extract-postgres", 8.5),
        row("default", "extract", "ADBC -> Parquet", 3.0),
    ]
    verdict = find(verdicts(rows), "default scale", "extract-postgres", "2x ADBC")
    assert verdict.status == bench.NOT_MET
    assert verdict.measured == "2.83x (job 8.5 s, ADBC -> Parquet 3.0 s)"


def test_dlts_best_is_the_fastest_dlt_run_that_succeeded() -> None:
    rows = [
        row("small", "load", "job load", 5.0),
        row("small", "load", "dlt parquet (ADBC)", 4.6),
        row("small", "load", "dlt csv (COPY)", None),
        row("small", "load", "dlt insert_values (default)", 9.0),
    ]
    verdict = find(verdicts(rows), "small scale", "load", "dlt")
    assert verdict.status == bench.NOT_MET
    assert "dlt parquet (ADBC) 4.6 s" in verdict.measured


def test_huge_targets_ahead_of_dlt_and_both_cores() -> None:
    rows = [
        row("huge", "extract", "job extract-postgres", 80.0, cpu=120.0),
        row("huge", "extract", "dlt sql_database/connectorx", 80.0),
        row("huge", "load", "job load", 70.0, cpu=60.0),
        row("huge", "load", "dlt parquet (ADBC)", 90.0),
    ]
    found = verdicts(rows)
    assert find(found, "huge scale", "extract-postgres", "ahead").status == bench.NOT_MET  # equal is not ahead
    assert find(found, "huge scale", "load", "ahead").status == bench.MET
    assert find(found, "huge scale", "extract-postgres", "both cores").status == bench.MET  # 1.5
    assert find(found, "huge scale", "load", "both cores").status == bench.NOT_MET  # 0.86


@pytest.mark.parametrize(("small_rows", "big_rows", "limit"), [(277_605, 2_770_080, 1.2), (277_605, 27_700_800, 1.44)])
def test_rss_growth_is_allowed_1_2x_per_10x_rows(small_rows: int, big_rows: int, limit: float) -> None:
    small = row("small", "csv", "job extract-csv", 4.0, rss=100, rows=small_rows)
    inside = bench.growth_target(
        "t", small, row("default", "csv", "job extract-csv", 4.0, rss=100 * limit, rows=big_rows)
    )
    outside = bench.growth_target(
        "t", small, row("default", "csv", "job extract-csv", 4.0, rss=100 * limit + 1, rows=big_rows)
    )
    assert (inside.status, outside.status) == (bench.MET, bench.NOT_MET)


def test_every_target_of_the_issue_is_printed_even_when_nothing_ran() -> None:
    found = bench.evaluate_targets([])
    assert found and {v.status for v in found} == {bench.NOT_MEASURED}
    targets = [v.target for v in found]
    for words in [
        ("Northwind day", "2.5x"),
        ("default scale", "extract-postgres", "2x ADBC"),
        ("default scale", "extract-postgres", "0.8x"),
        ("default scale", "load", "2x ADBC"),
        ("default scale", "load", "0.8x"),
        ("default scale", "extract-csv", "5x"),
        ("small scale", "extract-postgres", "1.0x dlt"),
        ("small scale", "load", "1.0x dlt"),
        ("people day", "10 s"),
        ("PADAM", "45 s"),
        ("ads load", "6 s"),
        ("huge scale", "extract-postgres", "ahead"),
        ("huge scale", "load", "ahead"),
        ("huge scale", "extract-csv", "RSS <= 500 MB"),
        ("default -> huge", "extract-csv", "1.2x"),
        ("small -> default", "extract-csv", "1.2x"),
        ("Northwind day", "RSS <= 500 MB"),
    ]:
        assert sum(all(w in t for w in words) for t in targets) == 1, words
    text = bench.format_targets(found, rounds=1)
    assert f"0 met, 0 not met, {len(found)} not measured" in text
    assert text.count("\n| ") == len(found) + 1  # the header, then one line per target


def test_the_table_shows_each_pipelines_ratio_to_its_reference() -> None:
    rows = [
        row("small", "padam", "job insert_all_data.sh 2022 (C=100)", 141.0, rows=742_650),
        row("small", "padam", "psycopg generator + 1 SQL per month -> CSV", 4.7, rows=742_650),
        row("small", "ads", "job nw ads load (one API call)", 12.0, cpu=6.0, rows=100),
        row("small", "ads", "requests -> boto3 put -> psycopg insert", None, rows=100),
    ]
    lines = bench.report(rows).splitlines()
    padam = next(line for line in lines if "insert_all_data" in line)
    assert "| 141.0 | 70.5 | 0.50 | 5,267 | 150 | 30.00 |  |  |" in padam
    ads = next(line for line in lines if "nw ads load" in line)
    assert ads.endswith("| 150 | failed |  |  |")  # its reference failed: no ratio


def test_postgres_text_of_a_double() -> None:
    assert bench._float8_text(623132098 / 742650) == "839.0656406113243"
    assert bench._float8_text(5.0) == "5"


def test_the_output_checks_compare_bytes(tmp_path: Path) -> None:
    job, ref = tmp_path / "job", tmp_path / "ref"
    for root, mean in ((job, "839.0656406113243"), (ref, "839.0656406113243")):
        (root / "year=2022" / "month=1").mkdir(parents=True)
        (root / "year=2022" / "entity_stats_yearly_2022.csv").write_text(f"h\n2022,{mean}\n")
        (root / "year=2022" / "month=1" / "entity_stats_monthly_2022_1.csv").write_text("h\n2022,1\n")
    assert bench.same_tree(job, ref) is None
    (ref / "year=2022" / "month=1" / "entity_stats_monthly_2022_1.csv").write_text("h\n2022,2\n")
    assert "1 of 2 files differ" in bench.same_tree(job, ref)
    (ref / "year=2022" / "month=1" / "entity_stats_monthly_2022_1.csv").write_text("h\n2022,1\n")
    (ref / "extra.csv").write_text("")
    assert "extra.csv" in bench.same_tree(job, ref)
    assert bench.same_tree(tmp_path / "nothing", ref) is None  # the job failed: nothing to compare

    (job / "summary.json").write_bytes(b'{"Scotland":8048}')
    (ref / "summary.json").write_bytes(b'{"Scotland":8048}\n')
    assert "differs" in bench.same_bytes(job / "summary.json", ref / "summary.json")
    (ref / "summary.json").write_bytes(b'{"Scotland":8048}')
    assert bench.same_bytes(job / "summary.json", ref / "summary.json") is None
    assert "wrote no" in bench.same_bytes(job / "summary.json", ref / "missing.json")


def test_the_load_references_read_the_file_each_partition_manifest_names(tmp_path: Path) -> None:
    (tmp_path / "orders.manifest.json").write_text('{"file": "orders.9b9bf82a9ca9458e.parquet", "rows": 830}')
    assert bench.published_file(tmp_path, "orders") == str(tmp_path / "orders.9b9bf82a9ca9458e.parquet")
    assert "did the extract job fail?" in bench.published_file(tmp_path, "order_lines")


def test_a_run_that_waited_for_another_runs_lock_says_so_in_the_table() -> None:
    waited = bench.Row("small", "extract", "job extract-postgres", 277_605, [bench.Sample(19.0, 4.8, 203, True, True)])
    plain = bench.Row("small", "extract", "ADBC -> Parquet", 277_605, [bench.Sample(0.5, 0.4, 122, True)])
    lines = bench.report([waited, plain]).splitlines()
    assert "| job extract-postgres (waited for a lock in 1 of 1) |" in lines[2]
    assert "| ADBC -> Parquet |" in lines[3]
