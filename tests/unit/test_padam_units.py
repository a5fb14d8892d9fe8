"""PADAM's pure parts: reconciliation, file writing, settings, messages and ledger records (no database)."""

from __future__ import annotations

import datetime as dt
import signal
from pathlib import Path

import pytest
from support import free_port

from northwind_elt.core import ledger
from northwind_elt.core.errors import ConfigError
from northwind_elt.pipelines.padam import commands
from northwind_elt.pipelines.padam.outputs import write_file
from northwind_elt.pipelines.padam.pipeline import PADAM
from northwind_elt.pipelines.padam.warehouse import MonthDiff, differences
from northwind_elt.protocol import attempts


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
        "2022-02: production 325 rows (sum 1,271), warehouse 325 rows (sum 1,270)"
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


def test_a_months_attempt_is_recorded_under_the_month_and_an_invalid_month_nowhere(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RANDOM_MAIN_CONTROLLER", "1")
    with pytest.raises(commands.PadamError):
        commands.insert_month("2022", "13")
    assert ledger.recent("padam", 10) == []  # no month to record it under: the error says why
    monkeypatch.setenv("RANDOM_MAIN_CONTROLLER", "0")
    with pytest.raises(commands.PadamError) as refused:
        commands.insert_month("2022", "3")
    entry = ledger.latest("padam", "2022-03")["padam-insert-month"]
    assert (entry["status"], entry["error"]) == ("failed", refused.value.message)


def test_an_attempt_records_its_outcome_once_under_its_unit(data_dir: Path) -> None:
    with attempts.attempt(PADAM, "padam-export", "2022-03") as recorded:
        recorded.succeeded("padam export: 2022-3: 33 files", rows=None)
    with pytest.raises(commands.PadamError), attempts.attempt(PADAM, "padam-export", "2022-04"):
        raise commands.PadamError("export", "2022-4 is not fully prepared", None, "nw padam prepare")
    interrupted = attempts.Attempt(PADAM, "padam-prepare", "2022-04", log=data_dir / "logs" / "padam" / "x.log")
    interrupted.interrupted(signal.SIGTERM)
    march, april = ledger.latest("padam", "2022-03"), ledger.latest("padam", "2022-04")
    assert (march["padam-export"]["status"], march["padam-export"]["notes"]) == (
        "success",
        "padam export: 2022-3: 33 files",
    )
    assert april["padam-export"]["status"] == "failed"
    assert april["padam-export"]["error"].endswith("Then rerun: nw padam prepare")
    prepare = april["padam-prepare"]
    assert (prepare["status"], prepare["error"], prepare["log"]) == (
        "interrupted",
        "stopped by SIGTERM",
        str(data_dir / "logs" / "padam" / "x.log"),
    )
    assert len(ledger.recent("padam", 10)) == 3


def test_a_failure_the_ledger_cannot_take_is_said_and_a_success_it_cannot_take_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    monkeypatch.setenv("NW_DATA_DIR", str(blocked / "data"))  # no directory can be made under a file
    recorded = attempts.Attempt(PADAM, "padam-export", "2022-03")
    recorded.failed("padam export: 2022-3 is not fully prepared")
    assert "(ledger " in capsys.readouterr().err
    with pytest.raises(OSError):
        recorded.succeeded("padam export: done")


def test_a_preparation_that_cannot_read_production_fails_before_meltano_and_is_recorded(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MELTANO_PROJECT_ROOT", str(tmp_path / "project"))
    closed = str(free_port())  # nothing listens there
    for prefix in (commands.PRODUCTION, commands.WAREHOUSE):
        values = {"HOST": "127.0.0.1", "PORT": closed, "USER": "u", "PASSWORD": "p", "DATABASE": "d"}
        for name, value in values.items():
            monkeypatch.setenv(f"{prefix}_{name}", value)
    with pytest.raises(commands.PadamError) as failed:
        commands.prepare()
    assert "padam prepare: cannot reach the PADAM production database postgresql://u@127.0.0.1:" in failed.value.message
    assert failed.value.message.endswith("Then rerun: nw padam prepare")
    assert not (data_dir / "logs").exists()  # no Meltano run
    # Production's months are unknown: the attempt is the current month's.
    today = dt.datetime.now(dt.UTC).date()
    entry = ledger.latest("padam", f"{today:%Y-%m}")["padam-prepare"]
    assert (entry["status"], entry["error"]) == ("failed", failed.value.message)
