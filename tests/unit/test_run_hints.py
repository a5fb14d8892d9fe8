"""The hint under a failed step's cause points somewhere that can fix it, never in a circle."""

from __future__ import annotations

from pathlib import Path

import pytest

from northwind_elt.entry.run import _hint
from northwind_elt.pipelines import REGISTRY

REFUSED = 'connection failed: connection to server at "127.0.0.1", port 55999 failed: Connection refused'


@pytest.fixture
def source_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NW_PGDATA", str(tmp_path / "pgdata"))  # never initialised: the server is stopped
    monkeypatch.setenv("PG_PORT", "55999")
    for name, value in {"HOST": "127.0.0.1", "USER": "reader", "PASSWORD": "x", "DATABASE": "northwind"}.items():
        monkeypatch.setenv(f"SOURCE_PG_{name}", value)


def test_a_refused_connection_to_the_stopped_embedded_server_says_start_it(
    source_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_PG_PORT", "55999")
    hint = _hint(REGISTRY["northwind"], "extract-postgres", REFUSED)
    assert "embedded Postgres (port 55999) is not running" in hint and "nw db up" in hint
    assert "Check the source database" not in hint


def test_a_refused_connection_to_another_server_names_its_settings(
    source_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_PG_PORT", "56001")
    hint = _hint(REGISTRY["northwind"], "extract-postgres", REFUSED.replace("55999", "56001"))
    assert "Check the source database postgresql://reader@127.0.0.1:56001/northwind" in hint
    assert "nw db up" not in hint


def test_a_refused_connection_to_the_embedded_s3_server_says_start_it(
    source_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The lake on the embedded S3 server, which is down: a plugin's error names its endpoint.
    monkeypatch.setenv("NW_LAKE_S3_ENDPOINT_URL", "http://127.0.0.1:58333")
    cause = 'Could not connect to the endpoint URL: "http://127.0.0.1:58333/lake/postgres/orders"'
    hint = _hint(REGISTRY["northwind"], "extract-postgres", cause)
    assert "nw s3 up" in hint and "127.0.0.1:58333" in hint
    assert "Check the" not in hint
