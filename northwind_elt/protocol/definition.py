"""What a pipeline is, in data: its unit, its steps, how each runs, is scheduled and is rerun.

The protocol names no pipeline: `northwind_elt.pipelines` registers the concrete ones, and
`nw run`, `nw status`, the rerun hints, the CLI verbs, the Airflow DAGs and the Meltano
files are all derived from (or checked against) those definitions.

Standard library only: the Airflow DAG files import the registry from the project root
without installing the package into Airflow's virtualenv.
"""

from __future__ import annotations

import datetime as dt
import string
from dataclasses import dataclass, field

# Step kinds. The first four are the day protocol (begin/commit tasks around a Meltano block);
# COMMAND is a step that an `nw` command runs whole (PADAM's generator, ads' load).
EXTRACT, LOAD, TRANSFORM, EXPORT, COMMAND = "extract", "load", "transform", "export", "command"
PROTOCOL_KINDS = (EXTRACT, LOAD, TRANSFORM, EXPORT)

# The unit a pipeline's steps take as their argument, and what the ledger keys them by.
DAY, MONTH, RUN = "day", "month", "run"

# Every DAG's task defaults: retries with a growing delay.
DAG_DEFAULT_ARGS = {
    "owner": "northwind-elt",
    "retries": 2,
    "retry_delay": dt.timedelta(minutes=1),
    "retry_exponential_backoff": True,
    "max_retry_delay": dt.timedelta(minutes=15),
}

# Placeholders of a step's command, and what Airflow fills them with for a run.
AIRFLOW_VALUES = {
    "day": "{{ ds }}",
    "year": "{{ logical_date.year }}",
    "month": "{{ logical_date.month }}",
    # Airflow exports the run id to the task's environment: read it there, never templated
    # into the command line, so no character of a (manual) run id reaches the shell.
    "run_id": '"$AIRFLOW_CTX_DAG_RUN_ID"',
}


@dataclass(frozen=True)
class Step:
    """One step of a pipeline's unit of work."""

    name: str
    kind: str
    needs: tuple[str, ...] = ()
    # Extract steps: the folder under the data directory their partitions live in, and,
    # for a file source, the tables every publish must contain. A database source's
    # tables are listed from the source itself when the step begins.
    dataset: str | None = None
    expected_tables: tuple[str, ...] = ()
    # Variable prefixes of the connections the step uses, checked before anything starts.
    connections: tuple[str, ...] = ()
    # The Meltano job that does the step's work (default: the step's name; None: no job).
    meltano_job: str | None = ""
    # COMMAND steps: the `nw` arguments that run the step for a unit ({day}, {year},
    # {month}, {run_id}); protocol steps run `nw --date {day} run <job>`.
    command: str | None = None
    # A step with a schedule of its own gets a DAG of its own (ads: hourly load, daily archive).
    schedule: str | None = None
    dag_id: str | None = None
    description: str = ""
    # The step's Airflow task id when it is not the one derived from its name: the id of a
    # hand-written DAG's task, kept so the task's history in Airflow carries on.
    airflow_task_id: str | None = None

    @property
    def job(self) -> str | None:
        """The Meltano job that runs this step (its name, by convention)."""
        return self.name if self.meltano_job == "" else self.meltano_job

    @property
    def serial_across_units(self) -> bool:
        """Whether the step runs for one unit at a time: a transform rebuilds the pipeline's
        shared staging views and candidate tables whatever its day."""
        return self.kind == TRANSFORM

    @property
    def task_id(self) -> str:
        return self.airflow_task_id or self.name.replace("-", "_")

    @property
    def is_protocol(self) -> bool:
        return self.kind in PROTOCOL_KINDS


@dataclass(frozen=True)
class Pipeline:
    name: str
    description: str
    steps: tuple[Step, ...]
    dag_id: str
    unit: str = DAY
    schedule: str = "@daily"
    # The first logical date its DAG knows, and the variable that overrides it.
    start_date: str = "2024-01-01"
    start_date_env: str = "NW_DAG_START_DATE"
    # The Meltano job that runs every step in order (`nw run <job>`), if there is one, and
    # the Meltano schedules that run the pipeline (name -> job).
    all_steps_job: str | None = None
    meltano_schedules: tuple[tuple[str, str], ...] = ()
    # The Meltano file (under the project root) holding the pipeline's plugins, jobs and schedules.
    meltano_file: str = ""
    outputs: tuple[str, ...] = field(default=())
    # The database its load, transform and export use (variable prefix), and where dbt
    # writes its results for this pipeline's builds (its --target-path, as its build command
    # spells it): in the data directory, so each environment (a test session, a worker) has
    # its own results and its own saved parse, which dbt reuses from one day to the next.
    warehouse: str = "ANALYTICS_PG"
    dbt_target_path: str = "${NW_DATA_DIR}/dbt"
    # The dbt tag selecting the pipeline's models, and the function writing its exports
    # ("module:function", imported only when the export runs).
    dbt_tag: str = ""
    exporter: str | None = None
    # The `nw` command group of a pipeline whose steps are commands (`nw padam ...`).
    command_group: str | None = None
    # What the pipeline reads when its source has no history, e.g. "the source Postgres": a run for
    # a past unit reads it as it is now, not as it was (`nw run` says so for a past day). Empty:
    # each unit's data is that unit's own.
    snapshot_source: str = ""

    def step(self, name: str) -> Step:
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(f"pipeline {self.name} has no step {name!r}; its steps: {', '.join(self.step_names)}")

    @property
    def step_names(self) -> tuple[str, ...]:
        return tuple(step.name for step in self.steps)

    def steps_from(self, first: str) -> tuple[str, ...]:
        """`first` and every step after it, in run order."""
        names = self.step_names
        return names[names.index(self.step(first).name) :]

    @property
    def extract_steps(self) -> tuple[Step, ...]:
        return tuple(step for step in self.steps if step.kind == EXTRACT)

    @property
    def runs_by_day(self) -> bool:
        """A day-protocol pipeline: `nw run` runs its steps for a day."""
        return self.unit == DAY and all(step.is_protocol for step in self.steps)

    def command(self, step: str) -> str:
        """The `nw` arguments that run `step` alone for a unit (placeholders unfilled)."""
        found = self.step(step)
        if found.command:
            return found.command
        return f"--date {{day}} run --verbose {found.job}"

    def runs_for_one_unit(self, step: str) -> bool:
        """Whether `step`'s command takes the unit (a day, month or run) as its argument. One that
        takes none (PADAM's prepare covers every month) records itself under a unit of its own
        choosing (the newest month production holds), which an Airflow run's unit cannot name."""
        fields = {name for _, name, _, _ in string.Formatter().parse(self.command(step)) if name}
        return bool(fields & AIRFLOW_VALUES.keys())

    def rerun(self, step: str, unit: str) -> str:
        """The command a person runs to redo `step` of `unit` (and, by day, the steps after it)."""
        if self.runs_by_day:
            return f"nw run --date {unit} --from {step}"
        found = self.step(step)
        if not found.command:
            return f"nw {self.command_group or self.name} {step.removeprefix(self.name + '-')}"
        values = {"day": unit[:10], "run_id": "RUN_ID"}
        if self.unit == MONTH:
            values.update(year=str(int(unit[:4])), month=str(int(unit[5:7])))
        if self.unit == RUN and "/" in unit:
            values["day"], values["run_id"] = unit.split("/", 1)
        command = found.command.format(**values)
        if self.unit == RUN and "RUN_ID" in command:
            command = command.replace(" --run-id RUN_ID", "")
        return f"nw {command}"

    def dags(self) -> list[tuple[str, str, tuple[Step, ...]]]:
        """(dag id, schedule, steps): one DAG for the steps on the pipeline's schedule, one
        more for each step with a schedule of its own."""
        own = [s for s in self.steps if s.schedule]
        shared = tuple(s for s in self.steps if not s.schedule)
        found = [(self.dag_id, self.schedule, shared)] if shared else []
        return found + [(s.dag_id or f"{self.name}_{s.task_id}", s.schedule, (s,)) for s in own]
