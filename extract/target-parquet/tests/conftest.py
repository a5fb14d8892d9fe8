from __future__ import annotations

import os
import tempfile

import pytest


@pytest.fixture(autouse=True, scope="module")
def private_day(request: pytest.FixtureRequest):
    """The target derives day and folders from the environment (the day contract)."""
    saved = {k: os.environ.get(k) for k in ("RUN_DATE", "NW_DATA_DIR")}
    os.environ["RUN_DATE"] = "2024-01-15"
    os.environ["NW_DATA_DIR"] = tempfile.mkdtemp(prefix="target-parquet-test-")
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
