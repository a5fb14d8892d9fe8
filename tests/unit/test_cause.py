"""The failure summary quotes the real error, not Meltano's closing line; each run's log goes
under its unit."""

from __future__ import annotations

import datetime as dt
import signal
from pathlib import Path

import pytest

from northwind_elt.core.locks import AlreadyRunning, running
from northwind_elt.protocol.meltano import Interrupted, Signals, find_cause, holding, log_path

BLOCK_FAILED = (
    "2026-11-24T05:00:00Z [error    ] meltano      Block run completed"
    "             err=RunnerError('Loader failed') success=False"
)


def test_meltano_closing_lines_are_never_the_cause() -> None:
    lines = [
        "2026-11-24T05:00:00Z [info     ] meltano      Running block\n",
        BLOCK_FAILED + "\n",
        "2026-11-24T05:00:00Z [error    ] meltano      Block run completed\n",
    ]
    assert find_cause(lines) is None


def test_an_arrow_error_is_the_cause() -> None:
    lines = [
        "2026-11-24T05:00:00Z [info     ] target-parquet-files pyarrow.lib.ArrowInvalid: Invalid UTF8 payload\n",
        BLOCK_FAILED + "\n",
    ]
    assert find_cause(lines) == "ArrowInvalid: Invalid UTF8 payload"


def test_the_projects_own_error_line_wins_over_a_traceback() -> None:
    lines = [
        "nw   Traceback (most recent call last):\n",
        "nw   KeyError: 'x'\n",
        "nw   ERROR: load refused for 2024-01-15: extract-csv did not complete\n",
        BLOCK_FAILED + "\n",
    ]
    assert find_cause(lines) == "load refused for 2024-01-15: extract-csv did not complete"


def test_a_csv_contract_error_is_quoted_whole() -> None:
    lines = [
        "tap-typed-csv  tap_typed_csv.reader.CsvContractError: "
        "/x.csv: line 3, column 'quantity': 'ten' is not an integer\n",
        BLOCK_FAILED + "\n",
    ]
    assert find_cause(lines) == "/x.csv: line 3, column 'quantity': 'ten' is not an integer"


def test_colour_codes_do_not_hide_the_cause() -> None:
    lines = ["\x1b[31mnw   ERROR: export for 2024-01-15: no rows\x1b[0m\n"]
    assert find_cause(lines) == "export for 2024-01-15: no rows"


STARTED = dt.datetime(2024, 1, 15, 5, 0, 1, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("unit", "folder"),
    [
        (dt.date(2024, 1, 15), "2024-01-15"),  # a day pipeline's step: as before units
        ("2022-03", "2022-03"),
        ("2024-01-15/scheduled__2024-01-15T12-12-00", "2024-01-15/scheduled__2024-01-15T12-12-00"),
        ("padam", "padam"),  # PADAM's prepare covers every month
    ],
)
def test_a_jobs_log_goes_under_its_unit(data_dir: Path, unit: dt.date | str, folder: str) -> None:
    assert log_path("extract-csv", unit, STARTED) == data_dir / "logs" / folder / "extract-csv-20240115T050001.log"


def test_a_unit_key_cannot_climb_out_of_the_logs_folder(data_dir: Path) -> None:
    path = log_path("padam-prepare", "../../etc", STARTED)
    assert path.resolve().is_relative_to((data_dir / "logs").resolve()), path


def test_an_entry_points_locks_refuse_a_second_run_and_a_signal_ends_the_wait(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MELTANO_PROJECT_ROOT", str(tmp_path / "project"))
    signals = Signals()
    prepare = ("padam-prepare", "padam", "run-padam-padam-prepare")
    with holding(signals, *prepare, what="padam prepare"):
        with (
            pytest.raises(AlreadyRunning, match=r"^padam prepare is already running"),
            holding(signals, *prepare, what="padam prepare"),
        ):
            pass
        # Another unit's run of the job waits for the plugin lock; a signal ends the wait.
        signals.received = signal.SIGTERM
        export = ("padam-prepare", "2022-03", "run-padam-padam-export")
        with pytest.raises(Interrupted) as stopped, holding(signals, *export, waiting="waiting for it"):
            pass
    assert stopped.value.signum == signal.SIGTERM
    assert capsys.readouterr().err.endswith(
        "INTERRUPTED while waiting for a run of padam-prepare; nothing was started\n"
    )
    assert running("padam", "padam-export", "2022-03") is None  # its step lock went with the wait
