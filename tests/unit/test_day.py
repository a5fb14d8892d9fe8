"""The day contract: strict parsing, pinning, and names that become paths."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from northwind_elt.core.day import (
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


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("2024-02-30", "no such calendar day"),
        ("2024-1-5", "not in YYYY-MM-DD form"),
        ("../x", "not in YYYY-MM-DD form"),
        ("", "not in YYYY-MM-DD form"),
        ("2024-01-15\n", "not in YYYY-MM-DD form"),
        ("2999-01-01", "after today"),
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
    target = layout.partition_file("postgres", name).resolve()
    assert target.is_relative_to(tmp_path / "postgres")
    assert target.parent.parent.parent == (tmp_path / "postgres").resolve()


@pytest.mark.parametrize("name", ["", "x" * 300])
def test_names_that_cannot_be_stored_are_refused_by_name(name: str) -> None:
    with pytest.raises(UnsafeName):
        path_component(name)
