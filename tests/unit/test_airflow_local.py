"""`nw airflow`: one setting for the port, and Airflow's failures in the ledger."""

from __future__ import annotations

import datetime as dt
import http.server
import io
import json
import sys
import threading
import urllib.parse
from pathlib import Path
from types import SimpleNamespace

import pytest

from northwind_elt.core import ledger
from northwind_elt.core.errors import ConfigError
from northwind_elt.entry import airflow_callbacks, airflow_local
from northwind_elt.entry.progress import LiveProgress
from northwind_elt.pipelines import REGISTRY
from northwind_elt.pipelines.northwind.pipeline import NORTHWIND

DAY = dt.date(2024, 1, 10)


def test_the_ui_and_the_task_api_follow_airflow_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_PORT", "8091")
    env = airflow_local.environment()
    assert env["AIRFLOW__API__PORT"] == "8091"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:8091/execution/"
    assert env["AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE"] == "False"
    monkeypatch.setenv("AIRFLOW_SCHEDULED_RUNS", "true")
    assert airflow_local.environment()["AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE"] == "True"


@pytest.mark.parametrize("value", ["80a", "0", "70000", ""])
def test_a_port_that_is_not_one_is_refused_naming_the_setting(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("AIRFLOW_PORT", value)
    with pytest.raises(ConfigError, match="AIRFLOW_PORT"):
        airflow_local.environment()


def test_an_airflow_failure_without_an_entry_of_nw_run_is_recorded(data_dir: Path) -> None:
    since = ledger.now().isoformat()
    said = airflow_local.record_failure("northwind", "load", DAY, since, "Task API refused", "DAG northwind_daily")
    entry = ledger.latest("northwind", DAY)["load"]
    assert "recorded in the ledger" in said
    assert entry["status"] == "failed" and entry["error"].startswith("Airflow: Task API refused")


def test_a_failure_nw_run_recorded_in_the_same_try_is_not_recorded_twice(data_dir: Path) -> None:
    since = ledger.now().isoformat()
    ledger.record("northwind", DAY, "load", "failed", error="the load's own cause")
    said = airflow_local.record_failure("northwind", "load", DAY, since, "bash exited 1", "DAG northwind_daily")
    assert "already recorded by nw run" in said
    assert ledger.latest("northwind", DAY)["load"]["error"] == "the load's own cause"


def test_a_success_before_the_try_does_not_hide_its_failure(data_dir: Path) -> None:
    ledger.record("northwind", DAY, "load", "success", rows=3)
    airflow_local.record_failure("northwind", "load", DAY, None, "killed", "DAG northwind_daily")
    assert ledger.latest("northwind", DAY)["load"]["status"] == "failed"


def test_the_dags_failure_callback_records_a_try_that_never_ran_under_the_runs_unit(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The callback as Airflow calls it, running the real `nw airflow record-failure`.
    monkeypatch.setattr(airflow_callbacks, "NW", str(Path(sys.executable).with_name("nw")))
    callback = airflow_callbacks.failure_callbacks("padam", {"generate": "padam-insert-month"})["on_failure_callback"]
    ti = SimpleNamespace(task_id="generate", dag_id="padam_monthly", try_number=3, start_date=None)
    context = {"ti": ti, "ds": "2022-03-01", "run_id": "manual__1", "exception": RuntimeError("Task API refused")}
    callback(context)
    # PADAM's unit is the month: the run of 2022-03-01 is March's.
    entry = ledger.latest("padam", "2022-03")["padam-insert-month"]
    assert entry["status"] == "failed"
    assert entry["error"].startswith("Airflow: Task API refused") and "task generate, try 3" in entry["error"]
    callback({**context, "ti": SimpleNamespace(**{**vars(ti), "task_id": "a_task_of_no_step"})})
    assert len(ledger.recent("padam", 10)) == 1


def test_the_callback_records_every_step_that_runs_for_the_runs_unit() -> None:
    # PADAM's prepare takes no month (`nw padam prepare` covers them all and is recorded under the
    # day it ran): the run's month cannot name its entry, so its Airflow failures are left to it.
    recorded = {
        (pipeline.name, step)
        for pipeline in REGISTRY.values()
        for _, _, steps in pipeline.dags()
        for step in airflow_callbacks.steps_of_tasks(pipeline, steps).values()
    }
    every_step = {(pipeline.name, step.name) for pipeline in REGISTRY.values() for step in pipeline.steps}
    assert every_step - recorded == {("padam", "padam-prepare")}
    assert {("ads", "ads-load"), ("ads", "ads-archive"), ("padam", "padam-export")} <= recorded
    steps = airflow_callbacks.steps_of_tasks(NORTHWIND, NORTHWIND.steps)
    assert steps["extract_postgres"] == "extract-postgres" and steps["load"] == "load"


def test_backfills_run_the_daily_and_monthly_dags_for_each_day_or_month_of_the_range() -> None:
    assert airflow_local.backfill_dags() == {
        "northwind_daily": "day",
        "people_daily": "day",
        "padam_monthly": "month",
        "ads_archive": "day",
    }
    assert airflow_local.logical_days("day", dt.date(2024, 2, 28), dt.date(2024, 3, 1)) == {
        "2024-02-28",
        "2024-02-29",
        "2024-03-01",
    }
    assert airflow_local.logical_days("month", dt.date(2022, 1, 15), dt.date(2022, 3, 1)) == {
        "2022-02-01",
        "2022-03-01",
    }


@pytest.mark.parametrize(
    ("dag_id", "first", "said"),
    [
        ("ads_api_load", DAY, "no daily or monthly DAG 'ads_api_load'"),
        ("padam_monthly", dt.date(2022, 1, 2), "padam_monthly runs on the first day of each month"),
    ],
)
def test_a_backfill_airflow_could_not_wait_for_is_refused_before_anything_starts(
    dag_id: str, first: dt.date, said: str
) -> None:
    with pytest.raises(ConfigError, match=said):
        airflow_local.backfill(dag_id, first, first + dt.timedelta(days=20), wait=True)


def test_airflow_is_sized_to_the_machine_not_to_a_server(monkeypatch: pytest.MonkeyPatch) -> None:
    # Airflow 3.3's defaults: 32 LocalExecutor workers, 2 DAG parsing processes (and 1 API server worker).
    assert airflow_local.machine_sizing(2) == {
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
    }
    assert airflow_local.machine_sizing(16)["AIRFLOW__CORE__PARALLELISM"] == "16"
    assert airflow_local.machine_sizing(0)["AIRFLOW__CORE__PARALLELISM"] == "1"
    for name in airflow_local.machine_sizing(2):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(airflow_local.os, "cpu_count", lambda: 3)
    env = airflow_local.environment()
    assert env["AIRFLOW__CORE__PARALLELISM"] == "3" and env["AIRFLOW__API__WORKERS"] == "1"
    # Each one overridable from .env (an empty value, docker compose's for one not set, is no override).
    monkeypatch.setenv("AIRFLOW__CORE__PARALLELISM", "8")
    monkeypatch.setenv("AIRFLOW__API__WORKERS", "")
    env = airflow_local.environment()
    assert env["AIRFLOW__CORE__PARALLELISM"] == "8" and env["AIRFLOW__API__WORKERS"] == "1"


def test_a_backfill_runs_as_many_units_at_once_as_the_dag_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NW_DAG_MAX_ACTIVE_RUNS", raising=False)
    assert airflow_local.runs_at_once("northwind_daily") == 1
    assert airflow_local.order_note("northwind_daily", "day", 1) == (
        "one day after another, in order (max_active_runs 1: NW_DAG_MAX_ACTIVE_RUNS)"
    )
    monkeypatch.setenv("NW_DAG_MAX_ACTIVE_RUNS", "3")
    assert airflow_local.runs_at_once("people_daily") == 3
    assert airflow_local.order_note("people_daily", "day", 3) == (
        "up to 3 days at once (max_active_runs 3: NW_DAG_MAX_ACTIVE_RUNS)"
    )
    # A PADAM month follows the bookmark of the one before, whatever the setting.
    assert airflow_local.runs_at_once("padam_monthly") == 1
    assert airflow_local.order_note("padam_monthly", "month", 1).startswith("one month at a time")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def task(task_id: str, state: str | None, started: dt.datetime | None = None, tried: int = 1, seconds=None):
    return airflow_local.TaskRun(task_id, state, tried, started, seconds)


def test_a_waited_backfill_shows_each_change_and_what_still_runs_every_five_quiet_seconds() -> None:
    clock, out = Clock(), io.StringIO()
    noon = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
    days = {"2024-01-10", "2024-01-11"}
    with LiveProgress(live=False, out=out, clock=clock, ticker=False) as progress:
        watch = airflow_local.BackfillWatch("northwind_daily", days, "day", progress)
        running = {
            "2024-01-10": airflow_local.DayRun("running", (task("extract_postgres", "running", noon),)),
            "2024-01-11": airflow_local.DayRun("queued"),
        }
        watch.show(running, noon + dt.timedelta(seconds=3))
        clock.now += 4.9
        progress.tick()  # 4.9 s of quiet: nothing yet
        watch.show(running, noon + dt.timedelta(seconds=8))  # nothing changed: nothing printed
        clock.now += 0.1
        progress.tick()
        retrying = {
            "2024-01-10": airflow_local.DayRun(
                "running", (task("extract_postgres", "success", noon, seconds=9.6), task("load", "up_for_retry"))
            ),
            "2024-01-11": airflow_local.DayRun("queued"),
        }
        watch.show(retrying, noon + dt.timedelta(seconds=20))
        clock.now += 5
        progress.tick()
        next_day = {
            "2024-01-10": airflow_local.DayRun(
                "success", (task("extract_postgres", "success", noon, seconds=9.6), task("load", "success", tried=2))
            ),
            "2024-01-11": airflow_local.DayRun(
                "running", (task("extract_postgres", "running", noon, tried=1), task("load", None, tried=0))
            ),
        }
        watch.show(next_day, noon + dt.timedelta(seconds=60))
        # Its try 1 failed and Airflow retried it between two polls: the failure is said all the same
        # (not of a task that had not started: its first try is no retry).
        next_day["2024-01-11"] = airflow_local.DayRun(
            "running", (task("extract_postgres", "running", noon, tried=2), task("load", "running", noon, tried=1))
        )
        watch.show(next_day, noon + dt.timedelta(seconds=70))
        done = {
            "2024-01-10": airflow_local.DayRun(
                "success", (task("extract_postgres", "success", noon, seconds=9.6), task("load", "success", tried=2))
            ),
            "2024-01-11": airflow_local.DayRun("failed", (task("extract_postgres", "failed", tried=3),)),
        }
        watch.show(done, noon + dt.timedelta(seconds=90))
        assert watch.finished(done) and not watch.finished(retrying)
        assert not watch.activities
    assert out.getvalue().splitlines() == [
        "  northwind_daily 2024-01-10: running",
        "  northwind_daily 2024-01-10 extract_postgres: running",
        "  northwind_daily 2024-01-11: queued",
        "  0 of 2 days done, 1 running, 0 retrying, 0 failed, 1 waiting",
        # Its elapsed time is Airflow's: it had run 3 s when first seen.
        "  still running: 2024-01-10 extract_postgres (8.0 s) | "
        "0 of 2 days done, 1 running, 0 retrying, 0 failed, 1 waiting",
        "  northwind_daily 2024-01-10: retrying",
        "  northwind_daily 2024-01-10 extract_postgres: success in 9.6 s",
        "  northwind_daily 2024-01-10 load: failed on try 1, Airflow retries it",
        "  0 of 2 days done, 0 running, 1 retrying, 0 failed, 1 waiting",
        "  still running: 2024-01-10 load, waiting for its retry (5.0 s) | "
        "0 of 2 days done, 0 running, 1 retrying, 0 failed, 1 waiting",
        "  northwind_daily 2024-01-10 load: success",
        "  northwind_daily 2024-01-10: success",
        "  northwind_daily 2024-01-11: running",
        "  northwind_daily 2024-01-11 extract_postgres: running",
        "  1 of 2 days done, 1 running, 0 retrying, 0 failed, 0 waiting",
        "  northwind_daily 2024-01-11 extract_postgres: failed on try 1, retried",
        "  northwind_daily 2024-01-11 extract_postgres: running (try 2)",
        "  northwind_daily 2024-01-11 load: running",
        "  northwind_daily 2024-01-11 extract_postgres: failed on try 3, no retry left",
        "  northwind_daily 2024-01-11: failed",
        # The last count is printed by wait_for_backfill, with the time the backfill took.
    ]
    assert done["2024-01-11"].failure() == "extract_postgres failed on try 3"


class FakeAirflow:
    """Airflow's REST API as `nw airflow backfill` uses it, served by a real HTTP server on a free local
    port: each poll of the range's runs answers the next scripted answer (the last one repeats)."""

    DROP = "drop"  # the connection closes without an answer, as on a timeout or a restart

    def __init__(self, polls: list, active: list[int] | None = None, backfill: tuple[int, dict] = (200, {})) -> None:
        self.polls, self.active, self.backfill = list(polls), list(active or [0]), backfill
        self.healthy = True
        self.backfills = 0
        self.patches: list[dict] = []
        self.polled = 0
        self.state = "queued"
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def answer(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                query = urllib.parse.parse_qs(url.query)
                if url.path == "/execution/health":
                    return self.answer(200 if fake.healthy else 503, {})
                if url.path == "/auth/token":
                    return self.answer(201, {"access_token": "token"})
                if url.path.endswith("/taskInstances"):
                    task = {"task_id": "load", "state": fake.state, "try_number": 1, "duration": 9.64}
                    return self.answer(200, {"task_instances": [task]})
                if url.path.endswith("/dagRuns") and "state" in query:  # the active runs, asked when pausing
                    total = fake.active.pop(0) if len(fake.active) > 1 else fake.active[0]
                    return self.answer(200, {"dag_runs": [], "total_entries": total})
                if url.path.endswith("/dagRuns"):
                    fake.polled += 1
                    poll = fake.polls.pop(0) if len(fake.polls) > 1 else fake.polls[0]
                    if poll == FakeAirflow.DROP:
                        self.close_connection = True
                        return None
                    if isinstance(poll, int):
                        return self.answer(poll, {"detail": f"answered {poll}"})
                    fake.state = poll
                    run = {"dag_run_id": "backfill__2024-01-10", "logical_date": "2024-01-10T00:00:00Z", "state": poll}
                    return self.answer(200, {"dag_runs": [run], "total_entries": 1})
                return self.answer(200, {"is_paused": False})  # the DAG itself

            def do_PATCH(self) -> None:
                fake.patches.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.answer(200, {})

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.startswith("/auth/token"):
                    return self.answer(201, {"access_token": "token"})
                answers = fake.backfill if isinstance(fake.backfill, list) else [fake.backfill]
                fake.backfills += 1
                return self.answer(*(answers.pop(0) if len(answers) > 1 else answers[0]))

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> FakeAirflow:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def port(self) -> int:
        return self.server.server_address[1]


@pytest.fixture
def airflow_api(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """A FakeAirflow maker, the project's AIRFLOW_PORT pointing at it."""
    started: list[FakeAirflow] = []

    def start(polls: list, **kwargs: object) -> tuple[FakeAirflow, airflow_local.AirflowApi]:
        fake = FakeAirflow(polls, **kwargs).__enter__()
        started.append(fake)
        monkeypatch.setenv("AIRFLOW_PORT", str(fake.port))
        monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
        return fake, airflow_local.AirflowApi(airflow_local.api_url(), tmp_path / "no-passwords.json")

    yield start
    for fake in started:
        fake.__exit__()


class FakeTime:
    """The wait's clock and sleep: a sleep moves the clock on and lets the progress ticker look, as its
    thread would (every half second here), so the 5-second rule is checked without waiting."""

    def __init__(self, progress_of: list[LiveProgress], interrupt_after: int | None = None) -> None:
        self.now, self.progress_of, self.sleeps, self.interrupt_after = 100.0, progress_of, 0, interrupt_after

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        if self.interrupt_after is not None and self.sleeps > self.interrupt_after:
            raise KeyboardInterrupt
        for _ in range(round(seconds / 0.5)):
            self.now += 0.5
            self.progress_of[0].tick()


def wait(fake_time: FakeTime, api: airflow_local.AirflowApi, give_up_s: float = 10.0) -> tuple[int, str, str]:
    out = io.StringIO()
    polling = airflow_local.Polling(interval_s=2.5, give_up_s=give_up_s, clock=fake_time.clock, sleep=fake_time.sleep)
    with LiveProgress(live=False, out=out, clock=fake_time.clock, ticker=False) as progress:
        fake_time.progress_of[:] = [progress]
        code, said = airflow_local.wait_and_pause(
            api, "northwind_daily", {"2024-01-10"}, "day", progress, scheduled=False, polling=polling
        )
    return code, said, out.getvalue()


def test_a_waited_backfill_polls_again_through_a_timeout_and_errors_5xx_and_is_never_silent(airflow_api) -> None:
    fake, api = airflow_api([FakeAirflow.DROP, 503, 503, "running", "success"])
    code, said, out = wait(FakeTime([]), api)
    assert (code, said) == (0, "")
    assert fake.polled == 5 and fake.patches == [{"is_paused": True}]
    assert out.splitlines() == [
        "  a poll of Airflow's API failed (RemoteDisconnected: Remote end closed connection without response); "
        "its API server answers: polling again every 2.5 s for up to 10 seconds",
        # 5 s without a line: the ticker says what goes on.
        "  still running: polling Airflow's API again after a failure (5.0 s) | "
        "0 of 1 day done, 0 running, 0 retrying, 0 failed, 1 waiting",
        "  Airflow's API answers again after 7.5 s",
        "  northwind_daily 2024-01-10: running",
        "  northwind_daily 2024-01-10 load: running",
        "  0 of 1 day done, 1 running, 0 retrying, 0 failed, 0 waiting",
        "  northwind_daily 2024-01-10 load: success in 9.6 s",
        "  northwind_daily 2024-01-10: success",
        "  1 of 1 day done, 0 running, 0 retrying, 0 failed, 0 waiting after 10.0 s",
        "northwind_daily paused again (scheduled runs are off: AIRFLOW_SCHEDULED_RUNS)",
    ]


def left_running_lines(port: int, why: str) -> list[str]:
    ui = f"http://127.0.0.1:{port}/dags/northwind_daily"
    return [
        f"ERROR: stopped waiting for the backfill of northwind_daily for 2024-01-10..2024-01-10: {why}",
        f"The backfill goes on in Airflow: follow its runs in the UI, {ui} (its Backfills tab lists it; "
        "cancel it there to stop it).",
        "northwind_daily is left unpaused (scheduled runs are off, so nothing else starts): once its runs have "
        f"ended, pause it with the toggle by its name in the UI, {ui}.",
        "Failed days then: nw status --date DAY; rerun them: nw airflow backfill --dag northwind_daily --from DAY "
        "--to DAY --wait",
    ]


def test_a_wait_that_fails_for_too_long_says_the_backfill_goes_on_and_leaves_the_dag_unpaused(airflow_api) -> None:
    fake, api = airflow_api([503])
    code, said, out = wait(FakeTime([]), api, give_up_s=10)
    assert code == 1 and fake.patches == []
    logs = airflow_local.home() / "logs" / "components"
    why = (
        f"Airflow's API failed every poll for 10.0 s, last: HTTP 503: answered 503 "
        f"(fix: see the API server's log in {logs})"
    )
    assert said.splitlines() == left_running_lines(fake.port, why)
    assert fake.polled == 5  # at 0, 2.5, 5, 7.5 and 10 s
    assert out.splitlines()[0].startswith("  a poll of Airflow's API failed (HTTP 503: answered 503)")


@pytest.mark.parametrize(
    ("answer", "healthy", "why"),
    [
        # A refusal is no passing failure: no poll again.
        (404, True, "Airflow's API answered 404 to GET /dags/northwind_daily/dagRuns: answered 404"),
        (503, False, "Airflow stopped answering on {url} while the backfill ran"),
    ],
)
def test_a_wait_ends_at_once_when_airflow_refuses_the_poll_or_stops_answering(
    airflow_api, answer: int, healthy: bool, why: str
) -> None:
    fake, api = airflow_api([answer])
    fake.healthy = healthy
    code, said, _ = wait(FakeTime([]), api)
    assert code == 1 and fake.polled == 1 and fake.patches == []
    fix = {
        404: f"see the API server's log in {airflow_local.home() / 'logs' / 'components'}",
        503: "start it again: make airflow; the backfill resumes once it runs",
    }[answer]
    why = f"{why.format(url=airflow_local.api_url())} (fix: {fix})"
    assert said.splitlines() == left_running_lines(fake.port, why)


def test_ctrl_c_while_waiting_exits_130_saying_the_backfill_goes_on(airflow_api) -> None:
    fake, api = airflow_api(["running"])
    code, said, out = wait(FakeTime([], interrupt_after=1), api)
    assert code == 130 and fake.patches == []
    assert said.splitlines() == left_running_lines(fake.port, "interrupted (Ctrl-C)")
    assert "northwind_daily 2024-01-10: running" in out


@pytest.mark.parametrize(
    ("active", "patches", "said"),
    [
        (
            [0, 0],
            [{"is_paused": True}],
            "northwind_daily paused again (scheduled runs are off: AIRFLOW_SCHEDULED_RUNS)",
        ),
        # A run triggered between the look at the active runs and the pause: unpaused again.
        (
            [0, 1],
            [{"is_paused": True}, {"is_paused": False}],
            "northwind_daily unpaused again: 1 run of it started while it was being paused",
        ),
        ([2], [], "northwind_daily stays unpaused: 2 other runs still to finish"),
    ],
)
def test_the_dag_is_paused_again_only_while_no_run_of_it_is_active(
    airflow_api, active: list[int], patches: list[dict], said: str
) -> None:
    fake, api = airflow_api(["success"], active=active)
    out = io.StringIO()
    with LiveProgress(live=False, out=out, ticker=False) as progress:
        airflow_local._pause_when_idle(api, "northwind_daily", progress)
    assert fake.patches == patches
    assert out.getvalue().splitlines() == [said]


@pytest.mark.parametrize(
    ("status", "detail", "fix"),
    [
        (409, "There is already a running backfill for dag northwind_daily", "wait for the backfill of"),
        (422, "No runs to create for the dates given", "fix what Airflow says, then rerun this command"),
    ],
)
def test_a_refused_backfill_says_airflows_reason_and_the_fix_for_it(
    airflow_api, status: int, detail: str, fix: str
) -> None:
    _, api = airflow_api(["success"], backfill=(status, {"detail": detail}))
    with LiveProgress(live=False, out=io.StringIO(), ticker=False) as progress, pytest.raises(ConfigError) as refused:
        airflow_local._create_backfill(api, "northwind_daily", DAY, DAY, 1, progress)
    assert refused.value.cause == (
        f"Airflow refused the backfill of northwind_daily for {DAY}..{DAY} (HTTP {status}): {detail}"
    )
    assert refused.value.fix.startswith(fix)
    assert ("still runs" in refused.value.fix) == (status == 409)


def test_spans_and_measured_seconds_read_as_in_nw_status() -> None:
    assert airflow_local._span(300) == "5 minutes" and airflow_local._span("45") == "45 seconds"
    assert airflow_local.duration(9.64) == "9.6 s" and airflow_local.duration(2135) == "2,135.0 s"
    assert airflow_local.duration(0.01) == "<0.1 s" and airflow_local.duration(None) == "0.0 s"


def test_a_backfill_refused_while_airflows_database_is_locked_is_asked_for_again(
    airflow_api, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Airflow answers 503 while its SQLite database is locked (the scheduler writing): ask again.
    monkeypatch.setattr(airflow_local, "BACKFILL_RETRY_S", 0.0)
    locked = (
        503,
        {"detail": "Database is locked. Backfill creation is not supported on SQLite under concurrent access."},
    )
    fake, api = airflow_api(["success"], backfill=[locked, locked, (200, {})])
    out = io.StringIO()
    with LiveProgress(live=False, out=out, ticker=False) as progress:
        airflow_local._create_backfill(api, "northwind_daily", DAY, DAY, 1, progress)
    assert fake.backfills == 3
    fake, api = airflow_api(["success"], backfill=locked)
    with LiveProgress(live=False, out=io.StringIO(), ticker=False) as progress, pytest.raises(ConfigError) as refused:
        airflow_local._create_backfill(api, "northwind_daily", DAY, DAY, 1, progress)
    assert fake.backfills == airflow_local.BACKFILL_CREATE_ATTEMPTS and "(HTTP 503)" in refused.value.cause
