"""Environment mistakes end in a message naming the setting, never a traceback."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
from pathlib import Path

import pytest
from support import NW, PROJECT

from northwind_elt.core import settings
from northwind_elt.core.day import DayLayout
from northwind_elt.core.errors import ConfigError
from northwind_elt.core.locks import step_lock


def test_a_missing_variable_is_named_with_the_file_to_set_it_in(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANALYTICS_PG_", "SOURCE_PG_"))}
    env |= {
        "NW_PROJECT_ROOT": str(tmp_path),  # no .env there to fill the gap
        "MELTANO_PROJECT_ROOT": str(tmp_path),
        "NW_DATA_DIR": str(tmp_path / "data"),
        "SOURCE_PG_HOST": "127.0.0.1",
        "SOURCE_PG_PORT": "5432",
        "SOURCE_PG_USER": "reader",
        "SOURCE_PG_PASSWORD": "x-secret",
        "SOURCE_PG_DATABASE": "northwind",
        "ANALYTICS_PG_HOST": "127.0.0.1",
        "ANALYTICS_PG_PORT": "5432",
        "ANALYTICS_PG_USER": "analytics",
        "ANALYTICS_PG_DATABASE": "analytics",
    }
    result = subprocess.run([NW, "--date", "2024-01-15", "run", "daily"], env=env, capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.startswith("ERROR: setup: ANALYTICS_PG_PASSWORD is not set")
    assert f"set ANALYTICS_PG_PASSWORD in {tmp_path / '.env'}" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists(), "nothing may be written before the check"


def test_a_port_that_is_not_a_number_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANALYTICS_PG_PORT", "55x")
    with pytest.raises(ConfigError, match="ANALYTICS_PG_PORT='55x' is not a TCP port"):
        settings.pg_conn("ANALYTICS_PG")


def test_a_taken_port_names_the_port_the_variable_and_the_holder(monkeypatch: pytest.MonkeyPatch) -> None:
    from northwind_elt.local import postgres as embedded

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        monkeypatch.setenv("PG_PORT", str(port))
        with pytest.raises(embedded.EmbeddedPostgresError) as raised:
            embedded._check_port_free()
    message = str(raised.value)
    assert f"port {port} on 127.0.0.1 is already in use by another program" in message
    assert "Set PG_PORT" in message
    if os.geteuid() == 0:  # only root may see every process's sockets
        assert f"held by process {os.getpid()}" in message


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a read-only file system needs root")
def test_a_read_only_data_directory_is_named_with_its_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mount = tmp_path / "ro"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(mount)], check=True)
    try:
        monkeypatch.setenv("NW_DATA_DIR", str(mount))
        with pytest.raises(ConfigError) as raised, step_lock(DayLayout(dt.date(2024, 1, 15), mount), "run-x"):
            pass
        message = str(raised.value)
        assert f"cannot write under the data directory {mount}" in message
        assert "NW_DATA_DIR" in message
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_a_port_whose_last_connection_lingers_in_time_wait_is_free(monkeypatch: pytest.MonkeyPatch) -> None:
    # What a just-stopped server leaves behind: `nw db stop` then `nw db up` must work.
    from northwind_elt.local import postgres as embedded

    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Postgres listens
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = listener.accept()
        accepted.close()  # the server side closes first: its end of the connection enters TIME_WAIT
        client.close()
    monkeypatch.setenv("PG_PORT", str(port))
    embedded._check_port_free()


def test_without_a_project_root_variable_the_root_is_the_checkout_holding_meltano_yml(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # `.venv/bin/nw` run by hand sets neither variable: .env, data/ and .pgdata are found from here.
    monkeypatch.delenv("MELTANO_PROJECT_ROOT", raising=False)
    monkeypatch.delenv("NW_PROJECT_ROOT", raising=False)
    assert settings.project_root() == PROJECT
    assert (settings.project_root() / "meltano.yml").is_file()
