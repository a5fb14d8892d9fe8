"""The pipeline diagram of README.md, generated from the registry so that it cannot drift.

  .venv/bin/python scripts/diagram.py           rewrite README.md's block (between its markers)
  .venv/bin/python scripts/diagram.py --check   exit 1 when README.md's block is not the generated one
  .venv/bin/python scripts/diagram.py --print   print the block

A Mermaid flowchart (GitHub draws ```mermaid blocks): one box per pipeline of the project
(`northwind_elt/pipelines/<name>/`), its steps joined by thick arrows in run order (a step
points at the steps that need it), and dotted arrows for what each step reads and writes as
its definition declares it (protocol/definition.py):
  extract    reads its connections' databases, or files holding its expected tables;
             writes its dataset in the lake
  load       reads the datasets of the extracts it needs; writes its connections' databases
  transform  reads and rebuilds (dbt) the models of its connections' databases
  export     reads its connections' databases; writes the pipeline's outputs
  command    uses its connections' databases (a line without arrows: the definition does not
             say which way); the last command steps write the pipeline's outputs
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
README = PROJECT / "README.md"
START, END = "<!-- pipeline-diagram:start -->", "<!-- pipeline-diagram:end -->"
COMMAND_LINE = ".venv/bin/python scripts/diagram.py"

if __name__ == "__main__":
    # Pipelines registered from outside the package (NW_EXTRA_PIPELINES) are not the project's.
    os.environ.pop("NW_EXTRA_PIPELINES", None)

from northwind_elt.core import settings  # noqa: E402
from northwind_elt.pipelines import REGISTRY  # noqa: E402
from northwind_elt.protocol.definition import (  # noqa: E402
    COMMAND,
    EXPORT,
    EXTRACT,
    LOAD,
    TRANSFORM,
    Pipeline,
    Step,
)

UNIT_WORDS = {"day": "by day", "month": "by month", "run": "by run"}
LEGEND = (
    "Thick arrows: run order (a step starts once the steps pointing at it are done). "
    "Dotted arrows: what a step reads and writes; a plain line: a database a command step uses. "
    "Cylinders are databases (named by their variables' prefix, e.g. `SOURCE_PG_*`), slanted boxes files."
)


def project_pipelines() -> list[Pipeline]:
    """The registry's pipelines that are the project's own: a folder of the package each."""
    package = PROJECT / "northwind_elt" / "pipelines"
    return [p for p in REGISTRY.values() if (package / p.name / "pipeline.py").is_file()]


def label(text: str) -> str:
    """Text for a quoted Mermaid label: its quotes and angle brackets as Mermaid's entity codes."""
    text = text.replace("->", "→")
    return text.replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")


def node_id(*parts: str) -> str:
    return "_".join(part.replace("-", "_").replace("/", "_").replace(".", "_") for part in parts)


class _Box:
    """The Mermaid lines of one pipeline's box: its nodes (each declared once) and edges."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.nodes: list[str] = []
        self.edges: list[str] = []
        self.declared: set[str] = set()

    def node(self, ident: str, shape: str) -> str:
        if ident not in self.declared:
            self.declared.add(ident)
            self.nodes.append(f"    {ident}{shape}")
        return ident

    def database(self, prefix: str) -> str:
        what = settings.CONNECTIONS.get(prefix, (prefix,))[0]
        return self.node(node_id(self.pipeline.name, "db", prefix), f'[("{label(what)}<br/>{prefix}_*")]')

    def dataset(self, dataset: str) -> str:
        return self.node(node_id(self.pipeline.name, "lake", dataset), f'[/"lake (Parquet): {label(dataset)}/"/]')

    def files(self, step: Step) -> str:
        tables = ", ".join(step.expected_tables)
        return self.node(node_id(self.pipeline.name, "files", step.name), f'[/"source files: {label(tables)}"/]')

    def outputs(self) -> str:
        lines = "<br/>".join(label(output) for output in self.pipeline.outputs)
        return self.node(node_id(self.pipeline.name, "outputs"), f'[/"{lines}"/]')

    def step(self, step: Step) -> str:
        detail = step.description if step.kind == COMMAND and step.description else step.kind
        lines = [f"<b>{step.name}</b>", *([label(detail)] if detail != step.name else [])]
        if step.schedule and step.schedule != self.pipeline.schedule:
            lines.append(f"own schedule: {label(step.schedule)}")
        return self.node(node_id(self.pipeline.name, step.name), f'["{"<br/>".join(lines)}"]')

    def edge(self, source: str, arrow: str, target: str) -> None:
        line = f"    {source} {arrow} {target}"
        if line not in self.edges:
            self.edges.append(line)


def _writers_of_outputs(pipeline: Pipeline) -> list[Step]:
    """The steps that write the pipeline's outputs: its exports, else its last steps (none needs them)."""
    exports = [step for step in pipeline.steps if step.kind == EXPORT]
    if exports:
        return exports
    needed = {need for step in pipeline.steps for need in step.needs}
    return [step for step in pipeline.steps if step.name not in needed]


def pipeline_box(pipeline: Pipeline) -> list[str]:
    box = _Box(pipeline)
    writers = {step.name for step in _writers_of_outputs(pipeline)} if pipeline.outputs else set()
    for step in pipeline.steps:
        me = box.step(step)
        databases = [box.database(prefix) for prefix in step.connections]
        if step.kind == EXTRACT:
            sources = databases or ([box.files(step)] if step.expected_tables else [])
            for source in sources:
                box.edge(source, "-.->", me)
            if step.dataset:
                box.edge(me, "-.->", box.dataset(step.dataset))
        elif step.kind == LOAD:
            for need in step.needs:
                dataset = pipeline.step(need).dataset
                if dataset:
                    box.edge(box.dataset(dataset), "-.->", me)
            for database in databases:
                box.edge(me, "-.->", database)
        elif step.kind == TRANSFORM:
            for database in databases:
                box.edge(database, "<-.->", me)
        elif step.kind == EXPORT:
            for database in databases:
                box.edge(database, "-.->", me)
        else:
            for database in databases:
                box.edge(me, "---", database)
        if step.name in writers:
            box.edge(me, "-.->", box.outputs())
        for need in step.needs:
            box.edge(node_id(pipeline.name, need), "==>", me)
    unit = UNIT_WORDS.get(pipeline.unit, pipeline.unit)
    title = f"{pipeline.name}: {unit}, {pipeline.schedule}"
    return [
        f'  subgraph {node_id(pipeline.name)}["{label(title)}"]',
        "    direction LR",
        *box.nodes,
        *box.edges,
        "  end",
    ]


def mermaid(pipelines: list[Pipeline]) -> str:
    """The flowchart of the pipelines, one box each."""
    lines = ["flowchart LR"]
    # Mermaid stacks boxes that share no edge bottom-up: the last declared is drawn on top.
    for pipeline in reversed(pipelines):
        lines += pipeline_box(pipeline)
    return "\n".join(lines)


def block(pipelines: list[Pipeline] | None = None) -> str:
    """What README.md holds between its markers."""
    chart = mermaid(project_pipelines() if pipelines is None else pipelines)
    return (
        f"\n<!-- Generated from the registry by {COMMAND_LINE}: edit the pipelines' definitions, then rerun it. -->\n\n"
        f"```mermaid\n{chart}\n```\n\n{LEGEND}\n\n"
    )


def readme_block(text: str) -> str:
    """README.md's text between the markers."""
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise SystemExit(f"{README}: needs exactly one {START} followed by one {END}")
    return text[text.index(START) + len(START) : text.index(END)]


def with_block(text: str, new: str) -> str:
    readme_block(text)  # the markers are checked
    return text[: text.index(START) + len(START)] + new + text[text.index(END) :]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 when README.md's diagram is not the generated one")
    mode.add_argument("--print", action="store_true", help="print the generated block")
    args = parser.parse_args()
    new = block()
    if args.print:
        print(new)
        return 0
    text = README.read_text(encoding="utf-8")
    if args.check:
        if readme_block(text) != new:
            print(f"README.md's pipeline diagram is not the registry's: regenerate it with {COMMAND_LINE}")
            return 1
        print("README.md's pipeline diagram is the registry's")
        return 0
    if readme_block(text) == new:
        print("README.md's pipeline diagram is up to date")
        return 0
    README.write_text(with_block(text, new), encoding="utf-8")
    print(f"README.md's pipeline diagram rewritten from the registry ({len(project_pipelines())} pipelines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
