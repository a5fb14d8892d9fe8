"""Installs are reproducible: every environment installs from a lock file that matches its requirements.

uv.lock pins the project's environments (.venv: `make install`, .venv-bench: `make bench-install`);
each Meltano plugin's pip_url names the lock that pins its virtualenv (`-c <lock>`, scripts/lock.py).
A pyproject.toml or pip_url changed without `make lock` fails here, offline and in about a second.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import subprocess
import sys
import tomllib
from functools import cache

import pytest
import uv
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version
from support import PROJECT

_spec = importlib.util.spec_from_file_location("lock_script", PROJECT / "scripts" / "lock.py")
lock_script = sys.modules["lock_script"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lock_script)

PLUGINS = lock_script.plugin_locks()
UV = uv.find_uv_bin()
# The machines the project runs on (developers', CI's, the image): Linux x86_64, CPython 3.11.
TARGET = default_environment() | {
    "python_version": "3.11",
    "python_full_version": "3.11.7",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}


def uv_run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([UV, *args], cwd=PROJECT, capture_output=True, text=True, timeout=120)


@cache
def pins(lock: str) -> dict[str, Version]:
    """The versions a requirements-style lock installs on the target machines."""
    pinned = {}
    for line in (PROJECT / lock).read_text().splitlines():
        if line and not line.startswith((" ", "#", "-")):
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate(TARGET):
                (specifier,) = requirement.specifier
                assert specifier.operator == "==", f"{lock}: {line} is not pinned exactly"
                pinned[canonicalize_name(requirement.name)] = Version(specifier.version)
    return pinned


def requirements_of(plugin) -> list[Requirement]:
    """What the plugin's lock must satisfy: its pyproject's dependencies with every extra, or its pip_url's."""
    if plugin.editable_dir:
        project = tomllib.loads((plugin.root / plugin.editable_dir / "pyproject.toml").read_text())["project"]
        listed = [
            *project["dependencies"],
            *(r for rs in project.get("optional-dependencies", {}).values() for r in rs),
        ]
    else:
        listed = list(plugin.requirements)
    return [Requirement(r) for r in listed]


def lock_path(plugin) -> str:
    return (plugin.root / plugin.lock).relative_to(PROJECT).as_posix()


def test_uv_lock_matches_the_projects_requirements() -> None:
    # Offline: uv compares the lock with every pyproject.toml it depends on, no index needed.
    result = uv_run("lock", "--check", "--offline")
    assert result.returncode == 0, f"uv.lock is out of date with pyproject.toml: run make lock\n{result.stderr}"


def test_the_project_environment_pins_the_uv_the_makefile_bootstraps_and_meltano() -> None:
    locked = {p["name"]: p["version"] for p in tomllib.loads((PROJECT / "uv.lock").read_text())["package"]}
    makefile = (PROJECT / "Makefile").read_text()
    (uv_version,) = re.findall(r"^UV_VERSION := (\S+)$", makefile, re.MULTILINE)
    assert locked["uv"] == uv_version == importlib.metadata.version("uv")
    dev_group = tomllib.loads((PROJECT / "pyproject.toml").read_text())["dependency-groups"]["dev"]
    assert "meltano==4.4.1" in dev_group and locked["meltano"] == "4.4.1"
    # make install syncs exactly this lock and refuses a stale one.
    # (behind the heartbeat that prints a line every few seconds while it runs)
    assert re.search(r"^\t@?(\$\(call heartbeat,[^)]*\) )?\$\(UV\) sync --locked\b", makefile, re.MULTILINE)


def test_the_plugins_are_those_of_both_meltano_projects() -> None:
    by_file = {(p.root.relative_to(PROJECT).as_posix(), p.source) for p in PLUGINS}
    assert ("scripts/bench", "meltano.yml") in by_file
    names = {p.name for p in PLUGINS}
    # In-project, PyPI, the project itself and the benchmark's stock plugins.
    assert {"tap-postgres-arrow", "target-s3-raw", "dbt-postgres", "nw", "tap-postgres", "target-postgres"} <= names


def test_every_meltano_plugin_installs_from_its_lock() -> None:
    for plugin in PLUGINS:
        assert plugin.lock, f"{plugin.name} ({plugin.source}): its pip_url names no lock: add -c <lock>, make lock"
        assert (plugin.root / plugin.lock).is_file(), f"{plugin.name}: {lock_path(plugin)} is missing: make lock"
        if plugin.editable_dir not in (None, "."):
            # A standalone plugin carries its lock in its own folder.
            assert plugin.lock == f"{plugin.editable_dir}/requirements.lock", plugin.name


@pytest.mark.parametrize(
    "plugin",
    [p for p in PLUGINS if p.editable_dir != "."],
    ids=lambda p: f"{p.name}:{'bench' if p.root == lock_script.BENCH_PROJECT else 'project'}",
)
def test_a_plugin_lock_pins_every_requirement_of_its_plugin(plugin) -> None:
    pinned = pins(lock_path(plugin))
    for requirement in requirements_of(plugin):
        if requirement.marker is not None and not requirement.marker.evaluate(TARGET):
            continue
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{lock_path(plugin)} does not pin {requirement}: make lock"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"{lock_path(plugin)} pins {name}=={pinned[name]}, outside {requirement}: make lock"
        )
    # It says what it was compiled from, so a changed pip_url without a new lock shows.
    assert f"#    {lock_script.header(plugin)}\n" in (PROJECT / lock_path(plugin)).read_text()


def test_nw_installs_the_projects_dependencies_as_uv_lock_pins_them() -> None:
    (nw,) = [p for p in PLUGINS if p.editable_dir == "."]
    exported = uv_run(*lock_script.EXPORT, "--offline")
    assert exported.returncode == 0, exported.stderr

    def body(text: str) -> list[str]:
        return [line for line in text.splitlines() if not line.startswith("#")]

    assert body((PROJECT / nw.lock).read_text()) == body(exported.stdout), f"{nw.lock} is stale: make lock"


def test_the_benchmarks_stock_plugins_are_installed_by_the_benchmark_only() -> None:
    # make install (meltano install of the project) never builds them; make bench-install does.
    project = {p.name for p in PLUGINS if p.root == lock_script.PROJECT}
    bench = {p.name for p in PLUGINS if p.root == lock_script.BENCH_PROJECT}
    assert bench == {"tap-postgres", "target-postgres"}
    assert project & bench == set()
