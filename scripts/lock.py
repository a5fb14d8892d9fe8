"""Regenerate every lock file: `make lock` (`make lock UPGRADE=1` takes the newest versions).

- uv.lock: the project's own virtualenvs, .venv (`make install`) and .venv-bench (`make bench-install`).
- One lock per Meltano plugin, named in its pip_url as `<requirements> -c <lock>`: Meltano's uv
  backend passes the flag to `uv pip install`, so every package of the plugin's virtualenv is
  pinned. An in-project plugin's lock is in its own folder, compiled from its pyproject.toml with
  every extra (its standalone tests, `make test-plugins`, use it too); the project's own `nw`
  (`-e .`) gets the project's dependencies exactly as uv.lock pins them; a PyPI plugin's lock is
  compiled from the requirements of its pip_url.

Every lock is universal (one file for every platform and Python >= 3.11). Pins that still fit
are kept, so a regenerated lock changes only what its requirements changed. Standard library
only: it runs in the bootstrap virtualenv that holds nothing but uv.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
# The benchmark's own Meltano project: the stock plugins that only `make bench-install` installs.
BENCH_PROJECT = PROJECT / "scripts" / "bench"
MELTANO_FILES = {
    BENCH_PROJECT: ("meltano.yml",),
    PROJECT: ("plugins/*.meltano.yml", "pipelines/*.meltano.yml"),
}
PYTHON_VERSION = "3.11"
COMPILE = ("pip", "compile", "--quiet", "--universal", "--python-version", PYTHON_VERSION)
EXPORT = ("export", "--quiet", "--frozen", "--no-dev", "--no-emit-project", "--no-hashes")
PIP_URL = re.compile(r"^\s*pip_url:\s*(.+?)\s*$")
NAME = re.compile(r"^\s*- name:\s*(\S+)\s*$")  # the last one before a pip_url is its plugin's


@dataclass(frozen=True)
class PluginLock:
    root: Path  # the Meltano project whose files define the plugin (pip_url paths are relative to it)
    source: str  # the Meltano file, relative to root
    name: str
    requirements: tuple[str, ...]  # the pip_url without its `-c <lock>`
    lock: str | None  # relative to root; None when the pip_url names none

    @property
    def editable_dir(self) -> str | None:
        return self.requirements[1] if self.requirements[:1] == ("-e",) else None


def plugin_locks() -> list[PluginLock]:
    """Every pip_url of both Meltano projects, split into its requirements and its lock."""
    found = []
    for root, patterns in MELTANO_FILES.items():
        for path in sorted({p for pattern in patterns for p in root.glob(pattern)}):
            name = ""
            for line in path.read_text().splitlines():
                if match := NAME.match(line):
                    name = match.group(1)
                if match := PIP_URL.match(line):
                    args = shlex.split(match.group(1))
                    lock = args[args.index("-c") + 1] if "-c" in args else None
                    requirements = [a for i, a in enumerate(args) if a != "-c" and (i == 0 or args[i - 1] != "-c")]
                    found.append(PluginLock(root, path.relative_to(root).as_posix(), name, tuple(requirements), lock))
    return found


def uv() -> str:
    return str(Path(sys.executable).parent / "uv")


def header(plugin: PluginLock) -> str:
    """What a compiled lock says it was made from, in its first lines."""
    if plugin.editable_dir:
        made_from = f"{plugin.editable_dir}/pyproject.toml with every extra"
    else:
        made_from = f"the pip_url of {plugin.name}: {' '.join(plugin.requirements)}"
    return f"make lock (uv pip compile, universal, Python {PYTHON_VERSION}+) from {made_from}"


def lock_plugin(plugin: PluginLock, upgrade: bool) -> None:
    assert plugin.lock, f"{plugin.name} ({plugin.source}): its pip_url names no lock (-c <file>)"
    extra = ("--upgrade",) if upgrade else ()
    out = ("-o", plugin.lock, "--custom-compile-command", header(plugin))
    if plugin.editable_dir == ".":
        cmd, stdin = (uv(), *EXPORT, "-o", plugin.lock), None
    elif plugin.editable_dir:
        cmd, stdin = (uv(), *COMPILE, *extra, "--all-extras", f"{plugin.editable_dir}/pyproject.toml", *out), None
    else:
        cmd, stdin = (uv(), *COMPILE, *extra, "-", *out), "\n".join(plugin.requirements) + "\n"
    (plugin.root / plugin.lock).parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(cmd, cwd=plugin.root, input=stdin, text=True, check=True)
    print(f"    {(plugin.root / plugin.lock).relative_to(PROJECT)}", flush=True)


def main() -> None:
    upgrade = "--upgrade" in sys.argv[1:]
    print("==> uv.lock (the project: .venv and .venv-bench)", flush=True)
    subprocess.run([uv(), "lock", *(["--upgrade"] if upgrade else [])], cwd=PROJECT, check=True)
    print("==> the Meltano plugins' locks", flush=True)
    done: set[Path] = set()
    for plugin in plugin_locks():
        if plugin.lock and (plugin.root / plugin.lock).resolve() in done:
            continue  # the same lock, named by two projects' pip_url
        lock_plugin(plugin, upgrade)
        done.add((plugin.root / plugin.lock).resolve())


if __name__ == "__main__":
    main()
