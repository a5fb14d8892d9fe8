"""Unit-tier fixtures: a private data directory and a pinned day, in process."""

from __future__ import annotations

from pathlib import Path

import pytest

DAY = "2024-01-15"


@pytest.fixture(autouse=True)
def no_env_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """The unit tier never reads a developer's .env: `nw` loads it into this process's
    environment, where it would reach every later test (and a running PADAM warehouse
    would show up in the status tests)."""
    from northwind_elt.entry import cli

    monkeypatch.setattr(cli, "_load_env_file", lambda: None)


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "data"
    monkeypatch.setenv("NW_DATA_DIR", str(data))
    monkeypatch.setenv("RUN_DATE", DAY)
    return data
