"""Unit-tier fixtures: a private data directory and a pinned day, in process."""

from __future__ import annotations

from pathlib import Path

import pytest

DAY = "2024-01-15"


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "data"
    monkeypatch.setenv("NW_DATA_DIR", str(data))
    monkeypatch.setenv("RUN_DATE", DAY)
    return data
