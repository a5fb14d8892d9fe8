"""entry/meltano_install.py (`make install`'s plugin step) reading Meltano 4.4.1's install output: lines as
.meltano/install.log holds them; a plain output and an explicit clock (no Meltano run, no sleep). main() runs
a stand-in for meltano: a small Python script printing recorded lines and exiting as Meltano would."""

from __future__ import annotations

import io
import sys
import textwrap
from pathlib import Path

from northwind_elt.entry.meltano_install import FAILED, INTERRUPTED, Installs, main, still_installing
from northwind_elt.entry.progress import LiveProgress

T = "2026-12-06T23:14:01.681057Z"


def meltano(level: str, text: str) -> str:
    return f"{T} [{level:<9}] meltano      {text}\n"


def follow(lines: list[tuple[float, str]], end: float, code: int = 0, **ended) -> tuple[Installs, list[str]]:
    now = [0.0]
    out = io.StringIO()
    with LiveProgress(live=False, out=out, clock=lambda: now[0], ticker=False, summary=still_installing) as progress:
        installs = Installs(progress)
        for at, line in lines:
            now[0] = at
            progress.tick()
            installs.take(line)
        now[0] = end
        installs.ended(code, **ended)
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
        code=1,
    )
    assert installs.failed == ["tap-typed-csv--people", "target-s3-raw"]
    assert lines == [
        "    FAILED extractor 'tap-typed-csv--people' (2.0 s)",
        "    installed extractor 'tap-typed-csv' (3.0 s)",
        "    FAILED loader 'target-s3-raw' (4.0 s)",
    ]


WARNED = "Could not compile the bytecode of 'tap-s3-raw'"  # a PluginInstallWarning's message, said alone
STARTED = [
    (0.0, meltano("info", "Installing extractor 'tap-typed-csv'")),
    (0.0, meltano("info", "Installing extractor 'tap-s3-raw'")),
    (1.0, meltano("info", "Installed extractor 'tap-typed-csv'")),
]


def test_a_plugin_meltano_only_warned_about_is_said_as_meltano_left_it() -> None:
    lines = [*STARTED, (2.0, meltano("warning", WARNED)), (2.0, meltano("warning", "Installed 1/2 plugins"))]
    installs, said = follow(lines, end=2.5, code=0)
    assert said[-1] == "    installed extractor 'tap-s3-raw' with a warning, see the log (2.5 s)"
    assert installs.warnings == [WARNED] and installs.failed == [] and installs.done[-1] == "tap-s3-raw"
    # Meltano 4.4.1 counts a WARNING status as not installed and exits 1: then it failed.
    installs, said = follow(lines, end=2.5, code=1)
    assert said[-1] == "    FAILED extractor 'tap-s3-raw' with a warning, see the log (2.5 s)"
    assert installs.failed == ["tap-s3-raw"]
    # No line at all about it, and Meltano exited 0: installed, as its exit status says.
    installs, said = follow(STARTED, end=2.5, code=0)
    assert said[-1] == "    installed extractor 'tap-s3-raw' without Meltano saying so, see the log (2.5 s)"


def test_plugins_cut_short_by_ctrl_c_are_interrupted_not_failed() -> None:
    installs, said = follow(STARTED, end=3.0, code=1, interrupted=True)
    assert said == ["    installed extractor 'tap-typed-csv' (1.0 s)", "    interrupted extractor 'tap-s3-raw' (3.0 s)"]
    assert installs.interrupted == ["tap-s3-raw"] and installs.failed == []


# -- main(), with a stand-in for meltano ----------------------------------------------------------------

RECORDED = [  # Meltano 4.4.1's `meltano install` (.meltano/install.log of a cold install)
    "2026-12-06T23:14:01.440709Z [info     ] meltano      Meltano 4.4.1, Python 3.11.7, Linux (x86_64)",
    "2026-12-06T23:14:01.668219Z [info     ] meltano      Installing 3 plugins",
    "2026-12-06T23:14:01.669577Z [info     ] meltano      Skipped installing extractor 'tap-postgres-arrow--padam'."
    " Plugin 'tap-postgres-arrow--padam' does not require installation: reusing parent virtualenv.",
    "2026-12-06T23:14:01.681057Z [info     ] meltano      Installing extractor 'tap-postgres-arrow'",
    "2026-12-06T23:14:01.699399Z [info     ] meltano      Installing extractor 'tap-typed-csv'",
    "2026-12-06T23:14:02.941206Z [info     ] meltano      Installed extractor 'tap-typed-csv'",
]
SAYS_INSTALLED = "2026-12-06T23:14:02.957410Z [info     ] meltano      Installed extractor 'tap-postgres-arrow'"
SUMMARY = "2026-12-06T23:14:07.543881Z [info     ] meltano      Installed 2/3 plugins"
# What a Ctrl-C does to the stand-in: once main has logged every line printed so far, its parent (main) gets
# a SIGINT, as from the terminal; the stand-in goes on once main has taken it (main writes that to the log).
# Synchronised on the log file, never on time.
CTRL_C = """
def ctrl_c(printed):
    log = Path(os.environ["MELTANO_SYS_DIR_ROOT"]) / "install.log"
    deadline = time.monotonic() + 60  # only so that a broken main() fails the test instead of hanging it
    def wait_for(ready):
        while not ready(log.read_text()) and time.monotonic() < deadline:
            time.sleep(0.01)
    wait_for(lambda text: text.count("\\n") >= printed)
    os.kill(os.getppid(), signal.SIGINT)
    wait_for(lambda text: "Ctrl-C" in text)
"""


def stand_in(tmp_path: Path, lines: list[str], then: str) -> list[str]:
    script = tmp_path / "meltano_stand_in.py"
    script.write_text(
        "import os, signal, sys, time\nfrom pathlib import Path\n"
        + CTRL_C
        + "assert sys.argv[1:] == ['install', '--parallelism', '2'], sys.argv\n"
        + "".join(f"print({line!r}, flush=True)\n" for line in lines)
        + f"PRINTED = {len(lines)}\n"
        + textwrap.dedent(then)
    )
    return [sys.executable, str(script)]


def run_main(tmp_path: Path, monkeypatch, capsys, lines: list[str], then: str) -> tuple[int, list[str], str]:
    monkeypatch.setenv("MELTANO_SYS_DIR_ROOT", str(tmp_path / "sys"))
    code = main(["--parallelism", "2"], meltano_command=stand_in(tmp_path, lines, then))
    # A slow machine may add "still installing" lines after 5 quiet seconds: not what is checked here.
    printed = [line for line in capsys.readouterr().out.splitlines() if "still installing" not in line]
    return code, printed, (tmp_path / "sys" / "install.log").read_text()


def without_seconds(lines: list[str]) -> list[str]:
    return [line.split(" (")[0] for line in lines]


STOPPING = "    Ctrl-C: waiting for Meltano to stop"


def test_main_reports_each_plugin_and_meltanos_summary_when_meltano_succeeds(tmp_path, monkeypatch, capsys) -> None:
    code, printed, log = run_main(tmp_path, monkeypatch, capsys, [*RECORDED, SAYS_INSTALLED, SUMMARY], "sys.exit(0)")
    assert code == 0
    assert log.splitlines() == [*RECORDED, SAYS_INSTALLED, SUMMARY]
    assert without_seconds(printed) == [
        "    installed extractor 'tap-typed-csv'",
        "    installed extractor 'tap-postgres-arrow'",
        "    Installed 2/3 plugins; 1 reuse a parent's virtualenv",
    ]


def test_main_follows_meltanos_exit_status_when_a_plugin_only_got_a_warning(tmp_path, monkeypatch, capsys) -> None:
    warned = f"2026-12-06T23:14:03.000000Z [warning  ] meltano      {WARNED}"
    code, printed, _ = run_main(tmp_path, monkeypatch, capsys, [*RECORDED, warned, SUMMARY], "sys.exit(0)")
    assert code == 0
    assert without_seconds(printed) == [
        "    installed extractor 'tap-typed-csv'",
        "    installed extractor 'tap-postgres-arrow' with a warning, see the log",
        "    Installed 2/3 plugins; 1 reuse a parent's virtualenv",
    ]
    code, printed, log = run_main(tmp_path, monkeypatch, capsys, [*RECORDED, warned], "sys.exit(1)")
    assert code == 1
    assert printed[1].startswith("    FAILED extractor 'tap-postgres-arrow' with a warning, see the log (")
    # Then the end of the log, and last what to do.
    assert printed[2:-1] == log.splitlines() and WARNED in printed[-2]
    assert printed[-1] == FAILED.format(log=tmp_path / "sys" / "install.log")


def test_ctrl_c_lets_meltano_stop_labels_plugins_interrupted_and_ends_with_the_rerun(
    tmp_path, monkeypatch, capsys
) -> None:
    # Meltano got the Ctrl-C too: it says what it finished meanwhile, then stops with an error status.
    then = f"ctrl_c(PRINTED)\nprint({SAYS_INSTALLED!r}, flush=True)\nsys.exit(1)\n"
    code, printed, log = run_main(tmp_path, monkeypatch, capsys, RECORDED[:-1], then)
    assert code == 130
    assert log.splitlines() == [*RECORDED[:-1], STOPPING.strip() + " (Ctrl-C again stops it at once)", SAYS_INSTALLED]
    assert without_seconds(printed) == [
        "    installed extractor 'tap-postgres-arrow'",
        STOPPING,
        "    interrupted extractor 'tap-typed-csv'",
        "INTERRUPTED: meltano install",
    ]
    assert printed[-1] == INTERRUPTED.format(log=tmp_path / "sys" / "install.log")


def test_a_second_ctrl_c_stops_meltano_at_once(tmp_path, monkeypatch, capsys) -> None:
    # This stand-in never stops on its own: only a kill ends it (a fail-safe says otherwise after 60 s).
    then = """
        ctrl_c(PRINTED)
        os.kill(os.getppid(), signal.SIGINT)
        signal.sigtimedwait([signal.SIGUSR1], 60)
        print("stand-in: never killed", flush=True)
        sys.exit(3)
    """
    code, printed, log = run_main(tmp_path, monkeypatch, capsys, RECORDED, then)
    assert code == 130
    killed = "Ctrl-C again: Meltano stopped at once (killed)"
    assert log.splitlines() == [*RECORDED, STOPPING.strip() + " (Ctrl-C again stops it at once)", killed]
    assert without_seconds(printed) == [
        "    installed extractor 'tap-typed-csv'",
        STOPPING,
        "    " + killed.split(" (")[0],
        "    interrupted extractor 'tap-postgres-arrow'",
        "INTERRUPTED: meltano install",
    ]
    assert printed[-1] == INTERRUPTED.format(log=tmp_path / "sys" / "install.log")
