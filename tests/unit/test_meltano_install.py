"""entry/meltano_install.py (`make install`'s plugin step) reading Meltano 4.4.1's install output: lines as
.meltano/install.log holds them; a plain output and an explicit clock (no Meltano run, no sleep)."""

from __future__ import annotations

import io

from northwind_elt.entry.meltano_install import Installs, still_installing
from northwind_elt.entry.progress import LiveProgress

T = "2026-12-06T23:14:01.681057Z"


def meltano(level: str, text: str) -> str:
    return f"{T} [{level:<9}] meltano      {text}\n"


def follow(lines: list[tuple[float, str]], end: float) -> tuple[Installs, list[str]]:
    now = [0.0]
    out = io.StringIO()
    with LiveProgress(live=False, out=out, clock=lambda: now[0], ticker=False, summary=still_installing) as progress:
        installs = Installs(progress)
        for at, line in lines:
            now[0] = at
            progress.tick()
            installs.take(line)
        now[0] = end
        installs.ended()
    return installs, out.getvalue().splitlines()


def test_each_plugin_gets_one_line_and_a_quiet_wait_says_what_is_still_installing() -> None:
    installs, lines = follow(
        [
            (0.0, meltano("info", "Installing 4 plugins")),
            (
                0.0,
                meltano(
                    "info",
                    "Skipped installing loader 'target-parquet-csv'. Plugin 'target-parquet-csv' does "
                    "not require installation: reusing parent virtualenv.",
                ),
            ),
            (0.1, meltano("info", "Installing extractor 'tap-postgres-arrow'")),
            (0.2, meltano("info", "Installing extractor 'tap-typed-csv'")),
            (1.4, meltano("info", "Installed extractor 'tap-typed-csv'")),
            (2.0, meltano("info", "Installing loader 'target-postgres-arrow'")),
            (7.0, meltano("info", "Installed extractor 'tap-postgres-arrow'")),
            (9.5, meltano("info", "Installed loader 'target-postgres-arrow'")),
            (9.5, meltano("info", "Installed 3/4 plugins")),
            (9.5, meltano("info", "Skipped installing 1/4 plugins")),
        ],
        end=9.6,
    )
    assert lines == [
        "    installed extractor 'tap-typed-csv' (1.2 s)",
        "    still installing: tap-postgres-arrow (7 s), target-postgres-arrow (5 s)",
        "    installed extractor 'tap-postgres-arrow' (6.9 s)",
        "    installed loader 'target-postgres-arrow' (7.5 s)",
    ]
    assert installs.failed == [] and installs.reused == 1 and installs.summary == "Installed 3/4 plugins"


def test_a_failed_plugin_is_named_when_meltano_names_it_else_when_meltano_ends() -> None:
    installs, lines = follow(
        [
            (0.0, meltano("info", "Installing extractor 'tap-typed-csv'")),
            (0.0, meltano("info", "Installing extractor 'tap-typed-csv--people'")),
            (0.0, meltano("info", "Installing loader 'target-s3-raw'")),
            (
                2.0,
                meltano(
                    "error",
                    "Installation failed. Could not create the virtualenv for 'extractors/tap-typed-csv--people'.",
                ),
            ),
            (3.0, meltano("error", "Installation failed. Command failed.")),
            (3.0, meltano("info", "Installed extractor 'tap-typed-csv'")),
            (3.0, meltano("error", "Installed 1/3 plugins")),
        ],
        end=4.0,
    )
    assert installs.failed == ["tap-typed-csv--people", "target-s3-raw"]
    assert lines == [
        "    FAILED extractor 'tap-typed-csv--people' (2.0 s)",
        "    installed extractor 'tap-typed-csv' (3.0 s)",
        "    FAILED loader 'target-s3-raw' (4.0 s)",
    ]
