"""One variable sets the embedded server's port: PG_PORT. Each database's own *_PG_PORT is for a
server of its own and follows PG_PORT while unset, in nw, in .env.example and in the Meltano
plugins' settings; a taken port's message names every variable that would stay behind."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest
import yaml
from support import PROJECT

from northwind_elt.core import settings
from northwind_elt.core.errors import ConfigError

PORT_VARIABLES = [f"{prefix}_PORT" for prefix in settings.CONNECTIONS]


@pytest.fixture
def no_ports(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ["PG_PORT", *PORT_VARIABLES]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MELTANO_PROJECT_ROOT", str(tmp_path))  # no developer's .env is read


def test_every_database_follows_pg_port_unless_its_own_port_is_set(
    no_ports: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert {settings.pg_conn(prefix).port for prefix in settings.CONNECTIONS} == {55432}
    monkeypatch.setenv("PG_PORT", "56000")
    assert {settings.pg_conn(prefix).port for prefix in settings.CONNECTIONS} == {56000}
    monkeypatch.setenv("SOURCE_PG_PORT", "5432")
    monkeypatch.setenv("ADS_PG_PORT", "")  # empty is unset
    assert settings.pg_conn("SOURCE_PG").port == 5432 and settings.port_variable("SOURCE_PG") == "SOURCE_PG_PORT"
    assert settings.pg_conn("ADS_PG").port == 56000 and settings.port_variable("ADS_PG") == "PG_PORT"


def test_a_bad_pg_port_is_named_as_pg_port(no_ports: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PG_PORT", "55x")
    with pytest.raises(ConfigError, match="PG_PORT='55x' is not a TCP port"):
        settings.pg_conn("ANALYTICS_PG")


def test_a_taken_port_names_the_per_database_variables_set_to_it(
    no_ports: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from northwind_elt.local import postgres as embedded

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        monkeypatch.setenv("PG_PORT", str(port))
        with pytest.raises(embedded.EmbeddedPostgresError) as alone:
            embedded._check_port_free()
        monkeypatch.setenv("SOURCE_PG_PORT", str(port))
        monkeypatch.setenv("PADAM_WH_PG_PORT", str(port))
        monkeypatch.setenv("ADS_PG_PORT", "5432")  # another server's: not left behind
        with pytest.raises(embedded.EmbeddedPostgresError) as behind:
            embedded._check_port_free()
    assert "Set PG_PORT in .env to a free port (every database on the embedded server follows it)" in str(alone.value)
    assert "Also set" not in str(alone.value)
    assert (
        f"Also set to {port}: SOURCE_PG_PORT, PADAM_WH_PG_PORT; change them with PG_PORT, or write them as "
        "${PG_PORT} in .env (then they follow it)."
    ) in str(behind.value)
    assert "ADS_PG_PORT" not in str(behind.value)


def test_env_example_sets_the_port_once_and_each_database_s_port_follows_it() -> None:
    lines = (PROJECT / ".env.example").read_text().splitlines()
    assert [line for line in lines if re.match(r"^[A-Z_]*PG_PORT=\d", line)] == ["PG_PORT=55432"]
    followers = [line.split("=", 1)[0] for line in lines if line.endswith("_PG_PORT=${PG_PORT}")]
    assert followers == [
        "SOURCE_PG_PORT",
        "ANALYTICS_PG_PORT",
        "PEOPLE_PG_PORT",
        "PADAM_PROD_PG_PORT",
        "PADAM_WH_PG_PORT",
        "ADS_PG_PORT",
    ]
    for name in followers:
        assert "follows PG_PORT" in lines[lines.index(f"{name}=${{PG_PORT}}") - 1], name


def test_python_dotenv_reads_env_example_s_ports_as_pg_port_as_nw_and_meltano_do(tmp_path: Path) -> None:
    from dotenv import dotenv_values

    env_file = tmp_path / ".env"
    env_file.write_text((PROJECT / ".env.example").read_text().replace("PG_PORT=55432", "PG_PORT=56123"))
    values = dotenv_values(env_file)  # as Meltano reads .env
    assert {values[f"{prefix}_PORT"] for prefix in ("SOURCE_PG", "ANALYTICS_PG", "PEOPLE_PG", "ADS_PG")} == {"56123"}


def test_nw_gives_meltano_each_unset_port_as_pg_port(no_ports: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PG_PORT", "56000")
    monkeypatch.setenv("SOURCE_PG_PORT", "5432")
    derived = settings.derived_ports()
    assert "SOURCE_PG_PORT" not in derived
    assert derived["ANALYTICS_PG_PORT"] == derived["PADAM_WH_PG_PORT"] == "56000"


def test_a_port_written_as_pg_port_in_env_is_not_left_behind(
    no_ports: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text("PG_PORT=56001\nSOURCE_PG_PORT=${PG_PORT}\nANALYTICS_PG_PORT=56001\n")
    monkeypatch.setenv("MELTANO_PROJECT_ROOT", str(tmp_path))
    monkeypatch.setenv("SOURCE_PG_PORT", "56001")  # as nw loads it
    monkeypatch.setenv("ANALYTICS_PG_PORT", "56001")
    assert settings.ports_set_to(56001) == ["ANALYTICS_PG_PORT"]


def meltano_port_settings() -> list[tuple[str, dict]]:
    """(plugin, setting) of every port setting of the project's Meltano files."""
    found = []
    for path in sorted([*(PROJECT / "plugins").glob("*.meltano.yml"), *(PROJECT / "pipelines").glob("*.meltano.yml")]):
        plugins = (yaml.safe_load(path.read_text()) or {}).get("plugins", {})
        for kind in plugins.values():
            for plugin in kind:
                found += [(plugin["name"], s) for s in plugin.get("settings", []) if s["name"] == "port"]
    return found


def test_every_plugin_port_reads_a_database_s_variable_that_nw_derives() -> None:
    ports = meltano_port_settings()
    assert {name for name, _ in ports} >= {"tap-postgres-arrow", "target-postgres-arrow", "target-postgres-arrow--ads"}
    for name, setting in ports:
        variable = setting["value"].lstrip("$").strip("{}")
        assert variable.removesuffix("_PORT") in settings.CONNECTIONS, name


def test_dbt_profiles_follow_pg_port_too() -> None:
    text = (PROJECT / "transform" / "profiles.yml").read_text()
    ports = re.findall(r"port: \"\{\{ (.*?) \| as_number \}\}\"", text)
    assert ports and all("env_var('PG_PORT'" in port for port in ports), ports


def test_a_pipeline_runs_with_its_databases_ports_unset(no_ports: None, monkeypatch: pytest.MonkeyPatch) -> None:
    # What `nw run` checks before the first step: the ports are not among the variables it
    # requires (PG_PORT stands in), but a bad PG_PORT is still refused by name.
    from northwind_elt.entry.run import check_environment
    from northwind_elt.pipelines import REGISTRY

    northwind = REGISTRY["northwind"]
    for prefix in ("SOURCE_PG", "ANALYTICS_PG"):
        for part, value in (("HOST", "127.0.0.1"), ("USER", "u"), ("PASSWORD", "p"), ("DATABASE", "d")):
            monkeypatch.setenv(f"{prefix}_{part}", value)
    monkeypatch.setenv("PG_PORT", "56000")
    check_environment(northwind, tuple(step.name for step in northwind.steps))
    monkeypatch.setenv("PG_PORT", "none")
    with pytest.raises(ConfigError, match="PG_PORT='none' is not a TCP port"):
        check_environment(northwind, tuple(step.name for step in northwind.steps))
