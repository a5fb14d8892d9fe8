"""`nw docs`: dbt's docs site generated and served on the port asked for, with every source
the marts read in their lineage and the exports as exposures; a real headless Chromium
(Debian's) opens the lineage page when it is installed."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import urllib.request

import pytest
from support import PROJECT, Pipeline, free_port, wait_for

MANIFEST = PROJECT / "transform" / "target" / "docs" / "manifest.json"
SOURCES_READ = {  # from the models' SQL: every source() each pipeline's staging reads
    "northwind": {"orders", "order_details", "customers", "products", "categories", "employees", "shippers"},
    "people": {"people", "places"},
    "padam": {"entity"},
}
EXPOSURES = {
    "northwind_orders_with_details_files": "northwind",
    "people_exports": "people",
    "padam_monthly_stats_files": "padam",
}


def fetch(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read().decode()
    except OSError:
        return None


@pytest.fixture(scope="module")
def docs_site(pipeline: Pipeline):
    port = free_port()
    server = pipeline.start("docs", "--port", str(port))
    try:
        wait_for(lambda: fetch(f"http://127.0.0.1:{port}/catalog.json") is not None, "the docs server", proc=server)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.send_signal(signal.SIGINT)
        output = server.communicate(timeout=120)[0]
    assert server.returncode == 0, output[-3000:]
    assert f"dbt docs on http://127.0.0.1:{port}" in output


def test_every_export_is_an_exposure_whose_lineage_reaches_every_source_its_pipeline_reads(docs_site: str) -> None:
    manifest = json.loads(fetch(f"{docs_site}/manifest.json"))
    assert manifest == json.loads(MANIFEST.read_text())  # the site serves what was generated
    parents = manifest["parent_map"]

    def upstream(node: str) -> set[str]:
        seen, todo = set(), [node]
        while todo:
            for parent in parents.get(todo.pop(), []):
                if parent not in seen:
                    seen.add(parent)
                    todo.append(parent)
        return seen

    for exposure, pipeline in EXPOSURES.items():
        reached = {
            n.rsplit(".", 1)[1] for n in upstream(f"exposure.nw_transform.{exposure}") if n.startswith("source.")
        }
        assert reached == SOURCES_READ[pipeline], (exposure, reached)
    sources = {n: s for n, s in manifest["sources"].items() if s["source_name"] in ("northwind", "people")}
    assert sources and all(s["config"]["freshness"]["warn_after"]["count"] for s in sources.values())
    assert all(s["config"]["loaded_at_field"] == "_day::timestamptz" for s in sources.values())


def test_a_headless_browser_opens_the_lineage_graph_of_the_mart(docs_site: str, tmp_path) -> None:
    browser = next(
        (shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None
    )
    if browser is None:
        pytest.skip("no Chromium installed (Debian: apt-get install chromium): the lineage page was not opened")
    page = f"{docs_site}/#!/model/model.nw_transform.orders_with_details?g_v=1"
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               f"--user-data-dir={tmp_path}", "--virtual-time-budget=20000", "--dump-dom", page]  # fmt: skip
    dom = subprocess.run(command, capture_output=True, text=True, timeout=300).stdout
    # The model page lists what the mart depends on; the lineage graph is drawn by cytoscape.
    assert all(f"stg_{table}" in dom for table in SOURCES_READ["northwind"]), dom[-2000:]
    assert "__________cytoscape_container" in dom and 'data-id="layer2-node"' in dom, dom[-2000:]
