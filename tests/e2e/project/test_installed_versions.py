"""What `make install` installed is exactly what the locks pin: the project's .venv equals uv.lock
(`uv pip freeze` against `uv export --locked`), and every Meltano plugin's virtualenv holds
only versions its lock names (`-c <lock>` in its pip_url).

tests/unit/test_lock_files.py checks the locks against the requirements; this checks the
environments built from them, after the real install the end-to-end tier runs on.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
import uv
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from support import PROJECT

_spec = importlib.util.spec_from_file_location("lock_script", PROJECT / "scripts" / "lock.py")
lock_script = sys.modules.setdefault("lock_script", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(lock_script)

UV = uv.find_uv_bin()
PROJECT_PLUGINS = [p for p in lock_script.plugin_locks() if p.root == lock_script.PROJECT]


def uv_out(*args: str) -> str:
    result = subprocess.run([UV, *args], cwd=PROJECT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"uv {' '.join(args)}: {result.stderr}"
    return result.stdout


def installed(python: str) -> dict[str, str]:
    """Name -> version of every distribution in an environment, editable projects left out."""
    versions = {}
    for line in uv_out("pip", "freeze", "--python", python).splitlines():
        if line.startswith("-e ") or " @ " in line:
            continue  # the project and the in-project plugins, installed from their folders
        name, version = line.split("==")
        versions[canonicalize_name(name)] = version
    return versions


def locked(requirements_text: str) -> dict[str, str]:
    """Name -> version of a requirements-style lock, for this machine (markers evaluated)."""
    versions = {}
    for line in requirements_text.splitlines():
        if line and not line.startswith((" ", "#", "-")):
            requirement = Requirement(line.removesuffix("\\").strip())
            if requirement.marker is None or requirement.marker.evaluate():
                (specifier,) = requirement.specifier
                versions[canonicalize_name(requirement.name)] = specifier.version
    return versions


def test_the_project_environment_is_exactly_uv_lock() -> None:
    # What `make install` syncs (`uv sync --locked`: the default dev group, which names the
    # project with its embedded and dev extras); uv export renders the same selection.
    want = locked(uv_out("export", "--locked", "--offline", "--no-hashes", "--no-emit-project"))
    have = installed(str(PROJECT / ".venv" / "bin" / "python"))
    missing = sorted(want.keys() - have.keys())
    assert not missing, f"locked but not installed in .venv: {missing}: make install"
    unlocked = sorted(have.keys() - want.keys())
    assert not unlocked, f"installed in .venv but not in uv.lock: {unlocked}"
    wrong = {n: (have[n], want[n]) for n in have if have[n] != want[n]}
    assert not wrong, f".venv versions differ from uv.lock (installed, locked): {wrong}: make install"


@pytest.mark.parametrize("plugin", PROJECT_PLUGINS, ids=lambda p: p.name)
def test_a_plugin_virtualenv_holds_only_its_locked_versions(plugin) -> None:
    venvs = sorted((PROJECT / ".meltano").glob(f"*/{plugin.name}/venv/bin/python"))
    assert venvs, f"{plugin.name} is not installed under .meltano/: make install"
    want = locked((plugin.root / plugin.lock).read_text())
    have = installed(str(venvs[0]))
    unlocked = sorted(have.keys() - want.keys())
    assert not unlocked, f"{plugin.name}: installed but not in {plugin.lock}: {unlocked}"
    wrong = {n: (have[n], want[n]) for n in have if have[n] != want[n]}
    assert not wrong, f"{plugin.name}: versions differ from {plugin.lock} (installed, locked): {wrong}: make install"
