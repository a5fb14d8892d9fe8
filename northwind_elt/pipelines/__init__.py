"""The registry: every pipeline of the project, one folder each.

A pipeline is a folder here holding its definition (`pipeline.py`, standard library only)
and whatever is particular to it (its outputs, its own commands), one Meltano file under
`pipelines/`, and dbt models tagged with its name. Registering it below is what makes
`nw run`, `nw status`, the rerun hints, the CLI and the Airflow DAGs know it.
"""

from __future__ import annotations

import importlib
import importlib.util
import os

from northwind_elt.pipelines.ads.pipeline import ADS
from northwind_elt.pipelines.northwind.pipeline import NORTHWIND
from northwind_elt.pipelines.padam.pipeline import PADAM
from northwind_elt.pipelines.people.pipeline import PEOPLE
from northwind_elt.protocol.definition import Pipeline

REGISTRY: dict[str, Pipeline] = {p.name: p for p in (NORTHWIND, PEOPLE, PADAM, ADS)}
# The pipelines `nw run` runs day by day through the begin/commit protocol.
PIPELINES: dict[str, Pipeline] = {name: p for name, p in REGISTRY.items() if p.runs_by_day}
DEFAULT = NORTHWIND


def register(pipeline: Pipeline) -> Pipeline:
    """Add a pipeline (a plug-in's, or a test's) to the registry."""
    REGISTRY[pipeline.name] = pipeline
    if pipeline.runs_by_day:
        PIPELINES[pipeline.name] = pipeline
    return pipeline


# Pipelines defined outside this package (a team's own, or a test's): comma-separated modules
# (`pkg.module`) or files (`/path/to/pipeline.py`), each with a module-level PIPELINE. A file
# needs no PYTHONPATH, which Meltano does not pass on to the `nw` tasks it runs.
EXTRA_PIPELINES_ENV = "NW_EXTRA_PIPELINES"


def _load_extra(entry: str) -> Pipeline:
    if entry.endswith(".py"):
        spec = importlib.util.spec_from_file_location(f"nw_extra_pipeline_{len(REGISTRY)}", entry)
        if spec is None or spec.loader is None:
            raise ImportError(f"{EXTRA_PIPELINES_ENV}: cannot load {entry}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(entry)
    return module.PIPELINE


for _entry in filter(None, (e.strip() for e in os.environ.get(EXTRA_PIPELINES_ENV, "").split(","))):
    register(_load_extra(_entry))


def pipeline_of_job(job: str) -> tuple[Pipeline, tuple[str, ...]]:
    """The day pipeline a Meltano job belongs to and the steps it runs."""
    for pipeline in PIPELINES.values():
        if job == pipeline.all_steps_job:
            return pipeline, pipeline.step_names
        for step in pipeline.steps:
            if step.job == job:
                return pipeline, (step.name,)
    raise KeyError(job)


def pipeline_of_step(step: str) -> Pipeline:
    for pipeline in REGISTRY.values():
        if step in pipeline.step_names:
            return pipeline
    raise KeyError(step)


def all_jobs() -> list[str]:
    """The jobs `nw run` accepts: every day pipeline's steps and its all-steps job."""
    jobs = {s.job for p in PIPELINES.values() for s in p.steps}
    return sorted(jobs | {p.all_steps_job for p in PIPELINES.values() if p.all_steps_job})
