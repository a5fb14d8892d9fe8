"""README.md's pipeline diagram is the one scripts/diagram.py generates from the registry, and the
generator draws each step's needs and what its definition says it reads and writes."""

from __future__ import annotations

import importlib.util
import sys

from support import PROJECT

from northwind_elt.protocol.definition import COMMAND, EXPORT, EXTRACT, LOAD, TRANSFORM, Pipeline, Step

_spec = importlib.util.spec_from_file_location("diagram_script", PROJECT / "scripts" / "diagram.py")
diagram = sys.modules["diagram_script"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(diagram)

TOY = Pipeline(
    name="toy",
    description="a toy",
    dag_id="toy_daily",
    steps=(
        Step("toy-extract-db", EXTRACT, dataset="rows", connections=("SOURCE_PG",)),
        Step("toy-extract-files", EXTRACT, dataset="files", expected_tables=("a", "b")),
        Step("toy-load", LOAD, needs=("toy-extract-db", "toy-extract-files"), connections=("ANALYTICS_PG",)),
        Step("toy-transform", TRANSFORM, needs=("toy-load",), connections=("ANALYTICS_PG",)),
        Step("toy-export", EXPORT, needs=("toy-transform",), connections=("ANALYTICS_PG",)),
    ),
    outputs=("out/{day}/toy.csv",),
)


def test_readme_shows_the_diagram_generated_from_the_registry() -> None:
    shown = diagram.readme_block(diagram.README.read_text(encoding="utf-8"))
    assert shown == diagram.block(), (
        "README.md's pipeline diagram differs from the registry's: regenerate it with "
        f"`{diagram.COMMAND_LINE}` (it rewrites only the lines between the pipeline-diagram markers)"
    )


def test_every_pipeline_step_and_need_of_the_registry_is_drawn() -> None:
    pipelines = diagram.project_pipelines()
    lines = set(diagram.mermaid(pipelines).splitlines())
    assert {p.name for p in pipelines} == {"northwind", "people", "padam", "ads"}
    for pipeline in pipelines:
        assert any(line.startswith(f'  subgraph {pipeline.name}["') for line in lines)
        for step in pipeline.steps:
            me = diagram.node_id(pipeline.name, step.name)
            assert any(line.startswith(f'    {me}["<b>{step.name}</b>') for line in lines), step.name
            for need in step.needs:
                assert f"    {diagram.node_id(pipeline.name, need)} ==> {me}" in lines, (step.name, need)


def test_each_step_kind_reads_and_writes_what_its_definition_declares() -> None:
    lines = set(diagram.mermaid([TOY]).splitlines())
    expected = {
        # An extract reads its database (or files of its tables) and writes its dataset in the lake.
        "    toy_db_SOURCE_PG -.-> toy_toy_extract_db",
        "    toy_toy_extract_db -.-> toy_lake_rows",
        "    toy_files_toy_extract_files -.-> toy_toy_extract_files",
        "    toy_toy_extract_files -.-> toy_lake_files",
        # The load reads the datasets of the extracts it needs, and writes its database.
        "    toy_lake_rows -.-> toy_toy_load",
        "    toy_lake_files -.-> toy_toy_load",
        "    toy_toy_load -.-> toy_db_ANALYTICS_PG",
        # The transform rebuilds the database's models; the export reads it and writes the outputs.
        "    toy_db_ANALYTICS_PG <-.-> toy_toy_transform",
        "    toy_db_ANALYTICS_PG -.-> toy_toy_export",
        "    toy_toy_export -.-> toy_outputs",
        '    toy_outputs[/"out/{day}/toy.csv"/]',
        '    toy_files_toy_extract_files[/"source files: a, b"/]',
        '    toy_db_SOURCE_PG[("source database<br/>SOURCE_PG_*")]',
    }
    assert expected <= lines, sorted(expected - lines)


def test_a_command_step_uses_its_databases_and_labels_escape_what_mermaid_would_read() -> None:
    step = Step("toy-load", COMMAND, connections=("ADS_PG",), description='API -> s3://b/<day>/"x"', schedule="@daily")
    toy = Pipeline(name="toy", description="", dag_id="toy", steps=(step,), schedule="12 * * * *")
    chart = diagram.mermaid([toy])
    assert "    toy_toy_load --- toy_db_ADS_PG" in chart
    assert "API → s3://b/#lt;day#gt;/#quot;x#quot;<br/>own schedule: @daily" in chart


def test_the_block_replaces_only_the_text_between_the_markers() -> None:
    text = f"before\n{diagram.START}\nold\n{diagram.END}\nafter\n"
    assert diagram.with_block(text, "NEW") == f"before\n{diagram.START}NEW{diagram.END}\nafter\n"
