"""Adding a pipeline: a definition, one Meltano file and a registry entry, nothing else.

A toy pipeline of two steps (a CSV extract and a load into the analytics database) is
written the way the README's "Add a pipeline" section says, in a scratch copy of the
project's Meltano files (so the project's own files stay as they are), registered through
NW_EXTRA_PIPELINES (a definition file outside the package), and run end to end through
`nw run` and `nw status`.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from support import PROJECT, Pipeline

DAY = "2024-02-29"  # a day no other test loads: the toy shares the analytics database
ITEMS = [("1", "anchor", "12.50"), ("2", "bolt", "0.05"), ("3", "chain, galvanised", "99.99")]

DEFINITION = """
from northwind_elt.protocol.definition import EXTRACT, LOAD, Pipeline, Step

PIPELINE = Pipeline(
    name="toy",
    description="items.csv -> Parquet -> analytics",
    dag_id="toy_daily",
    steps=(
        Step("toy-extract", EXTRACT, dataset="toy", expected_tables=("toy_items",)),
        Step("toy-load", LOAD, needs=("toy-extract",), connections=("ANALYTICS_PG",)),
    ),
    all_steps_job="toy-daily",
    meltano_file="pipelines/toy.meltano.yml",
)
"""

MELTANO_FILE = """
plugins:
  extractors:
    - name: tap-typed-csv--toy
      inherit_from: tap-typed-csv
      settings:
        - name: files
          kind: array
          value:
            - stream: toy_items
              path: $MELTANO_PROJECT_ROOT/items.csv
              key: [item_id]
              columns:
                item_id: integer
                name: string
                price: decimal(10,2)
      config:
        batch_config:
          encoding:
            format: parquet
          storage:
            root: file://${NW_DATA_DIR}/.staging/toy-extract/${RUN_DATE}/batches
            prefix: tap-typed-csv-
    - name: tap-parquet-manifest--toy
      inherit_from: tap-parquet-manifest
      settings:
        - name: manifest_file
          value: ${NW_DATA_DIR}/.staging/toy-load/${RUN_DATE}/intent.json
      config:
        batch_config:
          encoding:
            format: parquet
          storage:
            root: file://${NW_DATA_DIR}/.staging/toy-load/${RUN_DATE}/batches
  loaders:
    - name: target-parquet-toy
      inherit_from: target-parquet-files
      settings:
        - name: output_dir
          value: ${NW_DATA_DIR}/.staging/toy-extract/${RUN_DATE}
  utilities:
    - name: nw--toy
      inherit_from: nw
      commands:
        begin-toy-extract: {args: begin toy-extract}
        commit-toy-extract: {args: commit toy-extract}
        begin-toy-load: {args: begin toy-load}
        commit-toy-load: {args: commit toy-load}
jobs:
  - name: toy-extract
    tasks: [nw--toy:begin-toy-extract, tap-typed-csv--toy target-parquet-toy, nw--toy:commit-toy-extract]
  - name: toy-load
    tasks: [nw--toy:begin-toy-load, tap-parquet-manifest--toy target-postgres-arrow, nw--toy:commit-toy-load]
  - name: toy-daily
    tasks:
      - nw--toy:begin-toy-extract
      - tap-typed-csv--toy target-parquet-toy
      - nw--toy:commit-toy-extract
      - nw--toy:begin-toy-load
      - tap-parquet-manifest--toy target-postgres-arrow
      - nw--toy:commit-toy-load
"""


@pytest.fixture(scope="module")
def toy(pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Pipeline, Path]]:
    """A scratch project: the project's Meltano files (plugins installed once, shared) plus the toy's."""
    root = tmp_path_factory.mktemp("toy-project")
    shutil.copy(PROJECT / "meltano.yml", root)
    for folder in ("plugins", "pipelines"):
        shutil.copytree(PROJECT / folder, root / folder)
    for shared in (".meltano", "extract", "load", "transform"):
        (root / shared).symlink_to(PROJECT / shared)
    (root / "pipelines" / "toy.meltano.yml").write_text(textwrap.dedent(MELTANO_FILE))
    (root / "toy_pipeline").mkdir()
    (root / "toy_pipeline" / "pipeline.py").write_text(DEFINITION)
    (root / "items.csv").write_text("item_id,name,price\n" + "".join(f'{i},"{n}",{p}\n' for i, n, p in ITEMS))
    data = root / "data"
    env = {
        **pipeline.env,
        "MELTANO_PROJECT_ROOT": str(root),
        "NW_PROJECT_ROOT": str(root),
        "NW_DATA_DIR": str(data),
        "NW_EXTRA_PIPELINES": str(root / "toy_pipeline" / "pipeline.py"),
    }
    yield Pipeline(env=env, data_dir=data), root


def test_a_registered_pipeline_runs_through_nw_run_and_shows_in_nw_status(toy: tuple[Pipeline, Path]) -> None:
    run, _ = toy
    result = run.run("toy-daily", DAY)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = [line.split() for line in result.stdout.splitlines() if line.startswith("toy ")]
    assert [(line[1], line[-1]) for line in lines[:2]] == [("toy-extract", "success"), ("toy-load", "success")]
    # The rows as the CSV has them, in the analytics database's raw layer, for that day only.
    with run.analytics() as conn:
        rows = conn.execute("SELECT item_id, name, price, _day::text FROM raw.toy_items ORDER BY item_id").fetchall()
    assert rows == [(int(i), n, Decimal(p), DAY) for i, n, p in ITEMS]
    # The day's partition of the toy's extract and its step manifest, like any pipeline's.
    step_manifest = json.loads((run.data_dir / "_manifests" / DAY / "toy-extract.json").read_text())
    assert (run.data_dir / "toy" / "toy_items" / DAY / step_manifest["tables"]["toy_items"]["file"]).exists()

    status = run.nw("status")
    assert status.returncode == 0, status.stderr
    toy_lines = status.stdout[status.stdout.index("toy") :]
    assert "toy-extract" in toy_lines and "toy-load" in toy_lines
    assert DAY in toy_lines and "done" in toy_lines
    detail = run.status(DAY)
    assert "Pipeline toy, day 2024-02-29" in detail
    assert "All steps done" in detail.split("Pipeline toy")[1]


def test_a_step_of_the_new_pipeline_reruns_alone_and_its_gate_holds(toy: tuple[Pipeline, Path]) -> None:
    run, _ = toy
    # The load alone reruns the day from its verified files (the same rows, replaced whole).
    result = run.run("toy-load", DAY)
    assert result.returncode == 0, result.stderr[-3000:]
    with run.analytics() as conn:
        assert conn.execute("SELECT count(*) FROM raw.toy_items WHERE _day = %s", [DAY]).fetchone()[0] == len(ITEMS)
    # A day whose extract never ran is refused by the same gate as every pipeline's load.
    refused = run.run("toy-load", "2024-02-28")
    assert refused.returncode != 0
    assert "toy-extract" in refused.stderr and "nw run --date 2024-02-28 --from toy-extract" in refused.stderr
