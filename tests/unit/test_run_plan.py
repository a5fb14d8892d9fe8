"""How `nw run` groups a pipeline's steps into Meltano runs (entry/run.py `plan`): steps whose
needs are met run side by side, each in its own run; the steps after them in one run."""

from __future__ import annotations

from northwind_elt.entry.run import plan
from northwind_elt.pipelines import REGISTRY
from northwind_elt.protocol.definition import EXPORT, EXTRACT, LOAD, TRANSFORM, Pipeline, Step

NORTHWIND = REGISTRY["northwind"]


def test_northwinds_extracts_run_side_by_side_and_the_rest_in_one_meltano_run() -> None:
    assert plan(NORTHWIND, NORTHWIND.step_names) == [
        (("extract-postgres",), ("extract-csv",)),
        (("load", "transform", "export"),),
    ]


def test_a_run_from_a_later_step_is_one_chain() -> None:
    assert plan(NORTHWIND, NORTHWIND.steps_from("extract-csv")) == [(("extract-csv", "load", "transform", "export"),)]
    assert plan(NORTHWIND, ("load",)) == [(("load",),)]


def test_with_parallel_steps_off_every_step_is_in_one_chain_in_the_definitions_order() -> None:
    assert plan(NORTHWIND, NORTHWIND.step_names, parallel=False) == [(NORTHWIND.step_names,)]


def test_a_step_waits_for_every_step_it_needs_and_a_chain_never_crosses_a_parallel_segment() -> None:
    wide = Pipeline(
        name="wide",
        description="",
        dag_id="wide",
        steps=(
            Step("a", EXTRACT),
            Step("b", LOAD, needs=("a",)),
            Step("c", EXTRACT),
            Step("d", TRANSFORM, needs=("b", "c")),
            Step("e", EXPORT, needs=("d",)),
        ),
    )
    # a and c need nothing; b needs a; d needs b and c.
    assert plan(wide, wide.step_names) == [(("a",), ("c",)), (("b", "d", "e"),)]


def test_a_linear_pipeline_is_one_meltano_run() -> None:
    people = REGISTRY["people"]
    assert plan(people, people.step_names) == [(people.step_names,)]
