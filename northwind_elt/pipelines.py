"""Pipeline definitions: the single source for `nw run`, `nw status`, rerun hints and the DAGs.

Standard library only: the Airflow DAG files import this module from the project root
without installing the package into Airflow's virtualenv.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

EXTRACT, LOAD, TRANSFORM, EXPORT = "extract", "load", "transform", "export"

# Every DAG's task defaults (orchestrate/dags): retries with a growing delay.
DAG_DEFAULT_ARGS = {
    "owner": "northwind-elt",
    "retries": 2,
    "retry_delay": dt.timedelta(minutes=1),
    "retry_exponential_backoff": True,
    "max_retry_delay": dt.timedelta(minutes=15),
}


@dataclass(frozen=True)
class Step:
    """One step of a pipeline's day: a Meltano job wrapped in begin/commit tasks."""

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

    @property
    def job(self) -> str:
        """The Meltano job that runs this step (same name, by convention)."""
        return self.name

    @property
    def task_id(self) -> str:
        return self.name.replace("-", "_")


@dataclass(frozen=True)
class Pipeline:
    name: str
    description: str
    steps: tuple[Step, ...]
    dag_id: str
    schedule: str = "@daily"
    # The Meltano job that runs every step in order (used by `meltano schedule`).
    all_steps_job: str = "daily"
    outputs: tuple[str, ...] = field(default=())
    # The database its load, transform and export use (variable prefix), and where dbt
    # writes its results for this pipeline's builds.
    warehouse: str = "ANALYTICS_PG"
    dbt_target_path: str = "target"

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


NORTHWIND = Pipeline(
    name="northwind",
    description="Northwind Postgres + order_details.csv -> Parquet -> analytics -> orders_with_details",
    dag_id="northwind_daily",
    steps=(
        Step("extract-postgres", EXTRACT, dataset="postgres", connections=("SOURCE_PG",)),
        Step("extract-csv", EXTRACT, dataset="csv", expected_tables=("order_details",)),
        Step("load", LOAD, needs=("extract-postgres", "extract-csv"), connections=("ANALYTICS_PG",)),
        Step("transform", TRANSFORM, needs=("load",), connections=("ANALYTICS_PG",)),
        Step("export", EXPORT, needs=("transform",), connections=("ANALYTICS_PG",)),
    ),
    outputs=("output/{day}/orders_with_details.csv", "output/{day}/orders_with_details.json"),
)

PEOPLE = Pipeline(
    name="people",
    description="people.csv + places.csv -> Parquet -> the people database -> data/summary_output.json",
    dag_id="people_daily",
    steps=(
        Step("people-extract", EXTRACT, dataset="people", expected_tables=("people", "places")),
        Step("people-load", LOAD, needs=("people-extract",), connections=("PEOPLE_PG",)),
        Step("people-transform", TRANSFORM, needs=("people-load",), connections=("PEOPLE_PG",)),
        Step("people-export", EXPORT, needs=("people-transform",), connections=("PEOPLE_PG",)),
    ),
    all_steps_job="people-daily",
    outputs=("summary_output.json", "output/{day}/people/"),
    warehouse="PEOPLE_PG",
    dbt_target_path="target/people",
)

PIPELINES: dict[str, Pipeline] = {p.name: p for p in (NORTHWIND, PEOPLE)}
DEFAULT = NORTHWIND


def pipeline_of_job(job: str) -> tuple[Pipeline, tuple[str, ...]]:
    """The pipeline a Meltano job belongs to and the steps it runs."""
    for pipeline in PIPELINES.values():
        if job == pipeline.all_steps_job:
            return pipeline, pipeline.step_names
        for step in pipeline.steps:
            if step.job == job:
                return pipeline, (step.name,)
    raise KeyError(job)


def pipeline_of_step(step: str) -> Pipeline:
    for pipeline in PIPELINES.values():
        if step in pipeline.step_names:
            return pipeline
    raise KeyError(step)


def all_jobs() -> list[str]:
    return sorted({p.all_steps_job for p in PIPELINES.values()} | {s.job for p in PIPELINES.values() for s in p.steps})
