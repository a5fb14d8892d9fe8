from __future__ import annotations

import tempfile

import pytest


@pytest.fixture(autouse=True, scope="module")
def private_day():
    """The target derives day and folders from the environment (the day contract)."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RUN_DATE", "2024-01-15")
        env.setenv("NW_DATA_DIR", tempfile.mkdtemp(prefix="target-parquet-test-"))
        yield
