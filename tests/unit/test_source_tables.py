"""The tables of the source: the rule `nw begin extract-postgres` applies is the tap's, the
SOURCE_PG_EXCLUDE_TABLES line a failure gives reads back as those tables, and a commit names
every failing table and column with that line."""

from __future__ import annotations

import datetime as dt
import functools
import importlib.util
import itertools
import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dotenv import dotenv_values

from northwind_elt.core.day import DayLayout, path_component
from northwind_elt.core.errors import PipelineError
from northwind_elt.protocol import steps as protocol
from northwind_elt.protocol.definition import EXTRACT, Pipeline, Step

TAP_RULE = Path(__file__).resolve().parents[2] / "extract/tap-postgres-arrow/tap_postgres_arrow/tables.py"


@functools.cache
def tap_tables():
    """The tap's own module (standard library only), loaded from its file: the tap's venv is not ours."""
    spec = importlib.util.spec_from_file_location("tap_postgres_arrow_tables", TAP_RULE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


# Every kind of relation, partition or not, readable or not, in and out of both settings.
RELATIONS = [
    (f"{kind}{'_part' if part else ''}{'' if readable else '_secret'}", kind, part, readable)
    for kind, part, readable in itertools.product("rpvmfS", (False, True), (True, False))
]
SETTINGS = [
    ([], []),
    (["v", "m_secret", "f", "r"], []),
    ([], ["r", "p_part", "v", "r_secret"]),
    (["v", "m"], ["v", "p"]),
]


@pytest.mark.parametrize(("views", "exclude"), SETTINGS)
def test_nw_begin_and_the_tap_choose_the_same_tables(views: list[str], exclude: list[str]) -> None:
    tap = tap_tables()
    theirs = tap.choose_tables([tap.Relation("public", *row) for row in RELATIONS], views, exclude)
    ours = protocol.choose_source_tables(RELATIONS, views, exclude)
    for field in ("extracted", "partitions", "views_not_included", "excluded", "unreadable"):
        assert [r.name for r in getattr(theirs, field)] == getattr(ours, field), field


def test_the_rule_keeps_tables_and_listed_views_and_drops_partitions_unreadable_and_excluded() -> None:
    chosen = protocol.choose_source_tables(RELATIONS, ["v", "m_secret"], ["r"])
    assert chosen.extracted == ["p", "v"]
    assert chosen.partitions == ["r_part", "r_part_secret", "p_part", "p_part_secret"]
    assert chosen.unreadable == ["r_secret", "p_secret", "m_secret"]
    assert chosen.excluded == ["r"]
    assert "S" not in chosen.extracted  # a sequence or index is never a table


@pytest.mark.parametrize(
    ("text", "names"),
    [
        (None, []),
        ("", []),
        (" a , b,,c ", ["a", "b", "c"]),
        ('["a,b", "c"]', ["a,b", "c"]),
        ("%%%,東京", ["%%%", "東京"]),
    ],
)
def test_the_settings_are_read_as_the_tap_reads_them(text: str | None, names: list[str]) -> None:
    assert protocol.parse_names(text) == names == tap_tables().parse_names(text)


@pytest.mark.parametrize(
    "names",
    [
        ["bad_values"],
        ["skip_me", "bad_day", "bad_values"],
        ["%" * 63, "東京都渋谷区神宮前一丁目二番三号四五六七八"],
        ["a,b", "c"],
        [" padded ", "quote'd", 'dq"x', "hash #x", "$HOME", "back\\slash", "[bracket"],
        ["Order Items", "../../fc_escape"],
    ],
)
def test_the_line_a_failure_gives_reads_back_as_exactly_those_tables(names: list[str], tmp_path: Path) -> None:
    """Through python-dotenv (how nw and Meltano read .env) and the settings' parser."""
    line = protocol.env_line(protocol.EXCLUDE_ENV, names)
    env = tmp_path / ".env"
    env.write_text(f"OTHER=1\n{line}\n")
    value = dotenv_values(env)[protocol.EXCLUDE_ENV]
    assert protocol.parse_names(value) == names
    if all("," not in n and n == n.strip() for n in names) and not any(c in "".join(names) for c in "'\"#$\\["):
        assert line == f"{protocol.EXCLUDE_ENV}={','.join(names)}"  # the plain form when it can be


DAY = dt.date(2024, 1, 15)
SOURCE = Pipeline(
    name="source",
    description="one extract whose tables a source lists, for the unit tests",
    dag_id="source_daily",
    steps=(Step("extract-a", EXTRACT, dataset="a", expected_tables=("one", "two", "three")),),
)


def test_a_commit_names_every_failing_table_and_column_and_the_line_that_leaves_them_out(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both: the Makefile exports MELTANO_PROJECT_ROOT, which wins over NW_PROJECT_ROOT.
    monkeypatch.setenv("NW_PROJECT_ROOT", str(data_dir.parent))
    monkeypatch.setenv("MELTANO_PROJECT_ROOT", str(data_dir.parent))
    protocol.begin(SOURCE, "extract-a")
    layout = DayLayout(DAY, data_dir)
    staging = layout.staging_dir("extract-a")
    record = json.loads(layout.begin_record("extract-a").read_text())
    record.update(excluded_tables=["gone"], refused={"three": ["column _day: the load adds a column of that name"]})
    layout.begin_record("extract-a").write_text(json.dumps(record))
    failing = {"two": [("amount", "numeric(10,2)", "holds NaN"), ("ts", "timestamp without time zone", "holds ±inf")]}
    report = {
        "tables": [
            {
                "table": f"public.{name}",
                "schema": "public",
                "name": name,
                "detail": "-",
                "columns": [{"column": c, "pg_type": t, "problem": p} for c, t, p in columns],
            }
            for name, columns in failing.items()
        ]
    }
    (staging / protocol.FAILED_TABLES_FILE).write_text(json.dumps(report))
    for name in ("one", "three"):
        pq.write_table(pa.table({"id": [1]}), staging / f"{path_component(name)}.parquet")
    with pytest.raises(PipelineError) as raised:
        protocol.commit(SOURCE, "extract-a")
    message = str(raised.value)
    expected_two = "; ".join(f"column {c} {t}: {p}" for c, t, p in failing["two"])
    assert message.startswith(
        "extract-a for 2024-01-15: 2 source tables cannot be extracted: "
        f"'three' (column _day: the load adds a column of that name), 'two' ({expected_two})\n"
    )
    line = protocol.env_line(protocol.EXCLUDE_ENV, ["gone", "three", "two"])
    assert (
        f"with this line in {data_dir.parent / '.env'} (in place of SOURCE_PG_EXCLUDE_TABLES=gone): {line}\n" in message
    )
    assert message.endswith("Then rerun: nw run --date 2024-01-15 --from extract-a")
    assert not (staging / "three.parquet").exists()  # nothing of a refused table is kept
    assert not layout.store.exists(layout.step_manifest("extract-a"))


LISTED = Pipeline(
    name="listed",
    description="one extract whose tables the source lists (no declared tables), for the unit tests",
    dag_id="listed_daily",
    steps=(Step("extract-db", EXTRACT, dataset="db"),),
)


def test_a_table_the_tap_delivered_and_begin_did_not_list_is_refused(data_dir: Path) -> None:
    """The two writings of the rule cannot drift apart unnoticed: commit names the extra table."""
    from northwind_elt.core.locks import lease_owner, take_lease
    from northwind_elt.core.manifests import write_begin

    layout = DayLayout(DAY, data_dir)
    take_lease(f"listed-extract-db-{layout.iso}", "extract-db for the test")
    record = {"run_id": "r1", "started_at": "2024-01-15T00:00:00+00:00", "owner": lease_owner()}
    write_begin(layout, "extract-db", {**record, "expected_tables": ["one"], "excluded_tables": []})
    for name in ("one", "t_p1"):
        pq.write_table(pa.table({"id": [1]}), layout.staging_dir("extract-db") / f"{path_component(name)}.parquet")
    with pytest.raises(PipelineError, match=r"the tap extracted 1 table \['t_p1'\] that nw begin did not list"):
        protocol.commit(LISTED, "extract-db")
    assert not layout.store.exists(layout.step_manifest("extract-db"))
