"""PADAM's pure parts: reconciliation, file writing, settings and messages (no database)."""

from __future__ import annotations

from pathlib import Path

import pytest

from northwind_elt.core.errors import ConfigError
from northwind_elt.pipelines.padam import commands
from northwind_elt.pipelines.padam.outputs import write_file
from northwind_elt.pipelines.padam.warehouse import MonthDiff, differences


def test_differences_name_every_month_that_differs_or_exists_on_one_side_only() -> None:
    production = {(2022, 1): (177, 338), (2022, 2): (325, 1271), (2021, 12): (180, 400)}
    warehouse = {(2022, 1): (177, 338), (2022, 2): (325, 1270), (2022, 3): (1, 1)}
    assert differences(production, warehouse) == [
        MonthDiff(2021, 12, (180, 400), (0, 0)),
        MonthDiff(2022, 2, (325, 1271), (325, 1270)),
        MonthDiff(2022, 3, (0, 0), (1, 1)),
    ]
    assert differences(production, warehouse, [(2022, 1)]) == []
    assert differences(production, production) == []
    assert MonthDiff(2022, 2, (325, 1271), (325, 1270)).describe() == (
        "2022-02: production 325 rows (sum 1271), warehouse 325 rows (sum 1270)"
    )


def test_write_file_is_one_header_and_one_row_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "year=2022" / "entity_stats_yearly_2022.csv"
    write_file(path, ("year", "sum_values"), ("2022", "61862"))
    write_file(path, ("year", "sum_values"), ("2022", "61863"))  # replaced whole
    assert path.read_bytes() == b"year,sum_values\n2022,61863\n"
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_export_dir_must_be_absolute(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NW_DATA_DIR", str(tmp_path))
    monkeypatch.delenv(commands.EXPORT_DIR_ENV, raising=False)
    assert commands.export_root() == tmp_path / "padam" / "exports"
    monkeypatch.setenv(commands.EXPORT_DIR_ENV, "exports")
    with pytest.raises(ConfigError, match="PADAM_EXPORT_DIR='exports' is not an absolute path"):
        commands.export_root()


def test_bad_input_message_names_the_value_and_has_no_rerun(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANDOM_MAIN_CONTROLLER", "1")
    with pytest.raises(commands.PadamError) as caught:
        commands.insert_month("2022", "13")
    assert caught.value.message == (
        "padam insert-month: MONTH must be a whole number from 1 to 12, got '13'; nothing was changed"
    )


def test_a_refusal_ends_with_the_command_to_run() -> None:
    error = commands.PadamError("export", "2022-3 is not fully prepared", None, "nw padam prepare")
    assert error.message.splitlines()[-1] == "Then rerun: nw padam prepare"
