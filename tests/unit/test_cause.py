"""The failure summary quotes the real error, not Meltano's closing line."""

from __future__ import annotations

from northwind_elt.protocol.meltano import find_cause

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
