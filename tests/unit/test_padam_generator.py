"""PADAM generator: the contract of specs/padam.md §2 at C=1, pinned by the spec's hashes and counts."""

from __future__ import annotations

import datetime
import hashlib
import itertools
import random

import pytest

from northwind_elt.pipelines.padam.generator import (
    DEFAULT_CONTROLLER,
    MAX_CONTROLLER,
    InvalidInput,
    contract_digest,
    controller_from_env,
    month_bounds,
    month_rows,
    validate,
)

# From specs/padam.md §2 (measured on the original generator), never from this implementation.
SPEC_C1 = {
    2022: (7374, "f0aa18ee0204cb5ad40b73cae695905b3e814f024eb1c35f6af6840f2f325e92"),
    2023: (7379, "a184a46259d4da4550b90dae16b65c829a02f8105d1ad45b20e87bbaf29745a1"),
}
SPEC_2022_C1_PER_MONTH = [177, 325, 534, 687, 896, 1029, 1069, 905, 695, 529, 348, 180]
P_BY_MONTH = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 6, 8: 5, 9: 4, 10: 3, 11: 2, 12: 1}
# Gap bounds at C=1 per p, from the spec's table.
GAPS_C1 = {1: (10000, 20000), 2: (5000, 10000), 3: (3333, 6666), 4: (2500, 5000), 5: (2000, 4000), 6: (1666, 3333)}

MONTHS = range(1, 13)


def year_rows(year: int, controller: int) -> list[tuple[datetime.datetime, int]]:
    return [row for month in MONTHS for row in month_rows(year, month, controller)]


@pytest.mark.parametrize("year", sorted(SPEC_C1))
def test_year_at_c1_matches_the_spec_hash(year: int) -> None:
    count, digest = SPEC_C1[year]
    rows = year_rows(year, 1)
    assert len(rows) == count
    assert contract_digest(rows) == digest


def test_rows_per_month_2022_c1() -> None:
    assert [sum(1 for _ in month_rows(2022, month, 1)) for month in MONTHS] == SPEC_2022_C1_PER_MONTH


def test_digest_format() -> None:
    rows = [(datetime.datetime(2022, 1, 1), 1), (datetime.datetime(2022, 1, 1, 2, 3, 4), 22)]
    expected = hashlib.sha256(b"2022-01-01T00:00:00,1\n2022-01-01T02:03:04,22").hexdigest()
    assert contract_digest(rows) == expected
    assert contract_digest([]) == hashlib.sha256(b"").hexdigest()


@pytest.mark.parametrize("year", [2022, 2023, 2024])
@pytest.mark.parametrize("month", MONTHS)
def test_month_shape_at_c1(year: int, month: int) -> None:
    rows = list(month_rows(year, month, 1))
    start, end = month_bounds(year, month)
    assert rows[0][0] == datetime.datetime(year, month, 1, 0, 0, 0)
    assert rows[-1][0] < end
    assert all(start <= t < end for t, _ in rows)
    p = P_BY_MONTH[month]
    lo, hi = GAPS_C1[p]
    times = [t for t, _ in rows]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    assert all(lo <= gap <= hi for gap in gaps)  # so strictly increasing, whole seconds
    assert all(t.microsecond == 0 and t.tzinfo is None for t in times)
    for t, value in rows:
        assert isinstance(value, int)
        if t.weekday() < 5:
            assert p <= value <= 2 * p
        else:
            assert 2 * p <= value <= 4 * p
    # Every calendar day has rows: the largest gap is shorter than a day.
    assert {t.date() for t in times} == {(start + datetime.timedelta(days=d)).date() for d in range((end - start).days)}


def test_generation_is_reproducible_and_uses_a_private_stream() -> None:
    random.seed(0)
    first = list(month_rows(2022, 7, 1))
    random.random()  # the module-level generator is not the stream
    assert list(month_rows(2022, 7, 1)) == first


def test_month_bounds() -> None:
    assert month_bounds(2022, 1) == (datetime.datetime(2022, 1, 1), datetime.datetime(2022, 2, 1))
    assert month_bounds(2022, 12) == (datetime.datetime(2022, 12, 1), datetime.datetime(2023, 1, 1))
    assert month_bounds(2024, 2) == (datetime.datetime(2024, 2, 1), datetime.datetime(2024, 3, 1))


def test_limits() -> None:
    assert MAX_CONTROLLER == 1666
    assert DEFAULT_CONTROLLER == 100
    assert issubclass(InvalidInput, ValueError)


def test_validate_accepts_ints_and_strings() -> None:
    assert validate(2022, 1, 100) == (2022, 1, 100)
    assert validate("2022", "12", "1666") == (2022, 12, 1666)
    assert validate(1, 1, 1) == (1, 1, 1)
    assert validate(9998, 12, 1) == (9998, 12, 1)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((2022, 0, 100), "MONTH must be a whole number from 1 to 12, got 0"),
        ((2022, "13", 100), "MONTH must be a whole number from 1 to 12, got '13'"),
        ((2022, 13, 100), "MONTH must be a whole number from 1 to 12, got 13"),
        ((2022, "1.5", 100), "MONTH must be a whole number from 1 to 12, got '1.5'"),
        (("abc", 1, 100), "YEAR must be a whole number from 1 to 9998, got 'abc'"),
        (("2022x", 1, 100), "YEAR must be a whole number from 1 to 9998, got '2022x'"),
        (("", 1, 100), "YEAR must be a whole number from 1 to 9998, got ''"),
        ((0, 1, 100), "YEAR must be a whole number from 1 to 9998, got 0"),
        ((9999, 1, 100), "YEAR must be a whole number from 1 to 9998, got 9999"),
        ((2022.0, 1, 100), "YEAR must be a whole number from 1 to 9998, got 2022.0"),
        ((True, 1, 100), "YEAR must be a whole number from 1 to 9998, got True"),
    ],
)
def test_validate_refuses_year_and_month(args: tuple, message: str) -> None:
    with pytest.raises(InvalidInput) as error:
        validate(*args)
    assert str(error.value) == message


@pytest.mark.parametrize("controller", [0, "0", -5, 1667, "1667", 3334, "x", "", None, 1.0])
def test_validate_refuses_controller(controller: object) -> None:
    with pytest.raises(InvalidInput) as error:
        validate(2022, 1, controller)
    message = str(error.value)
    assert message.startswith("RANDOM_MAIN_CONTROLLER must be a whole number from 1 to 1666 ")
    assert message.endswith(f"(above 1666 two rows of June and July share a second), got {controller!r}")


def test_controller_message_exact() -> None:
    with pytest.raises(InvalidInput) as error:
        validate(2022, 1, "0")
    assert str(error.value) == (
        "RANDOM_MAIN_CONTROLLER must be a whole number from 1 to 1666 "
        "(above 1666 two rows of June and July share a second), got '0'"
    )


def test_month_rows_validates_at_call_time() -> None:
    with pytest.raises(InvalidInput, match="MONTH"):
        month_rows(2022, 13, 1)
    with pytest.raises(InvalidInput, match="RANDOM_MAIN_CONTROLLER"):
        month_rows(2022, 1, 1667)


def test_controller_from_env() -> None:
    assert controller_from_env({}) == 100
    assert controller_from_env({"RANDOM_MAIN_CONTROLLER": ""}) == 100
    assert controller_from_env({"RANDOM_MAIN_CONTROLLER": "1"}) == 1
    assert controller_from_env({"RANDOM_MAIN_CONTROLLER": "1666"}) == 1666
    for bad in ["0", "1667", "x", "-1", "1e3"]:
        with pytest.raises(InvalidInput, match="RANDOM_MAIN_CONTROLLER"):
            controller_from_env({"RANDOM_MAIN_CONTROLLER": bad})


def test_controller_from_env_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANDOM_MAIN_CONTROLLER", "7")
    assert controller_from_env() == 7
    monkeypatch.delenv("RANDOM_MAIN_CONTROLLER")
    assert controller_from_env() == 100


def test_largest_controller_keeps_timestamps_unique() -> None:
    # At C=1666 lo = 1 in June/July: still strictly increasing.
    for month in (6, 7):
        times = [t for t, _ in month_rows(2022, month, MAX_CONTROLLER)]
        assert all(a < b for a, b in itertools.pairwise(times))
