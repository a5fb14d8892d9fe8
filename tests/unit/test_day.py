"""The day contract: strict parsing, pinning, and names that become paths."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from northwind_elt.core.day import (
    HASH_MARK,
    MAX_NAME_BYTES,
    NAME_MAX,
    DayLayout,
    InvalidDay,
    UnsafeName,
    name_of,
    parse_day,
    path_component,
    pinned_day,
    resolve_day,
)
from northwind_elt.core.errors import ConfigError
from target_parquet_files import naming as target_naming


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("2024-02-30", "no such calendar day"),
        ("2024-1-5", "not in YYYY-MM-DD form"),
        ("../x", "not in YYYY-MM-DD form"),
        ("", "not in YYYY-MM-DD form"),
        ("2024-01-15\n", "not in YYYY-MM-DD form"),
        ("2999-01-01", "more than 1 day after today"),
    ],
)
def test_bad_days_are_refused_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(InvalidDay, match=reason):
        parse_day(text, max_future_days=1, today=dt.date(2024, 1, 15))


def test_a_task_refuses_to_start_without_a_pinned_day(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUN_DATE", raising=False)
    with pytest.raises(ConfigError) as raised:
        pinned_day("load")
    message = str(raised.value)
    assert "load started without a day" in message
    assert "RUN_DATE=YYYY-MM-DD meltano run load" in message
    monkeypatch.setenv("RUN_DATE", "2024-01-15")
    assert pinned_day("load") == dt.date(2024, 1, 15)


def test_only_the_entry_point_decides_today(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUN_DATE", raising=False)
    assert resolve_day(None) == dt.datetime.now(dt.UTC).date()
    assert resolve_day("2024-01-15") == dt.date(2024, 1, 15)
    monkeypatch.setenv("RUN_DATE", "2024-01-16")
    assert resolve_day(None) == dt.date(2024, 1, 16)


@pytest.mark.parametrize(
    "name", ["orders", "Order Items", "../../fc_escape", ".hidden", "..", "a/b\\c", "δοκιμή", "100%", "x" * 60]
)
def test_names_become_one_safe_reversible_path_component(name: str, tmp_path: Path) -> None:
    component = path_component(name)
    assert "/" not in component and component not in (".", "..") and not component.startswith(".")
    assert name_of(component) == name
    layout = DayLayout(dt.date(2024, 1, 15), tmp_path)
    target = Path(layout.partition_file("postgres", name, "0123456789abcdef0123")).resolve()
    assert target.is_relative_to(tmp_path / "postgres")
    assert target.parent.parent.parent == (tmp_path / "postgres").resolve()


def test_an_empty_name_is_refused() -> None:
    with pytest.raises(UnsafeName):
        path_component("")


# Longer than MAX_NAME_BYTES once encoded: names of CSV streams, or Postgres names of a build
# with a larger NAMEDATALEN (the default allows 63 bytes: 189 once encoded, which fits whole).
LONG_NAMES = ["x" * 300, "x" * 301, "%" * 67, "%" * 68, "東" * 23, "東" * 24, "." + "é" * 120]


def test_a_name_too_long_to_encode_whole_gets_a_short_distinct_component(tmp_path: Path) -> None:
    components = {name: path_component(name) for name in LONG_NAMES}
    assert len(set(components.values())) == len(LONG_NAMES)  # distinct names, distinct files
    layout = DayLayout(dt.date(2024, 1, 15), tmp_path)
    for name, component in components.items():
        assert len(component.encode()) <= MAX_NAME_BYTES and HASH_MARK in component, name
        assert "/" not in component and not component.startswith(".")
        assert "%" not in component.split(HASH_MARK)[0][-2:], component  # no escape cut in half
        # Every file name written around it fits the file system: the manifest, its temporary name.
        manifest = layout.partition_manifest("postgres", name)
        data_file = layout.partition_file("postgres", name, "f" * 32)  # a run id: its first 16 name the attempt
        assert data_file.name == f"{component}.{'f' * 16}.parquet"
        for written in (manifest, data_file):
            assert len(f".{written.name}.XXXXXXXX.tmp".encode()) <= NAME_MAX
        assert Path(manifest.parent.parent.parent) == tmp_path / "postgres"


def test_the_longest_postgres_names_are_stored_whole() -> None:
    for name in ("%" * 63, "東京都渋谷区神宮前一丁目二番三号四五六七八"):  # 63 bytes: 189 encoded
        assert name_of(path_component(name)) == name


@pytest.mark.parametrize("name", ["orders", "Order Items", "../../x", ".h", "%" * 63, *LONG_NAMES])
def test_target_parquet_files_names_a_table_s_file_as_the_partitions_do(name: str) -> None:
    """commit finds a table's staged file by `path_component`: the target must name it alike."""
    assert target_naming.file_stem(name) == path_component(name)
    assert target_naming.MAX_STEM_BYTES == MAX_NAME_BYTES


def test_partitions_on_disk_are_named_by_their_manifest(tmp_path: Path) -> None:
    layout = DayLayout(dt.date(2024, 1, 15), tmp_path)
    for name in ("plain", LONG_NAMES[0]):
        manifest = Path(layout.partition_manifest("postgres", name))
        manifest.parent.mkdir(parents=True)
        manifest.write_text(json.dumps({"table": name, "file": "x.parquet"}))
    assert set(layout.partitions_on_disk("postgres")) == {"plain", LONG_NAMES[0]}
