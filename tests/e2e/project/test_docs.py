"""`nw docs`: dbt's docs site generated and served on the port asked for, with every source
the marts read in their lineage and the exports as exposures, every pipeline's models and sources
named in their own warehouse's database with the column types of that warehouse's catalog, every
column of a mart or export described, and the sources' freshness on their pages; a real headless
Chromium (Debian's) opens the lineage page and a model page of each dbt warehouse (it skips without
a browser, unless NW_REQUIRE_BROWSER is set, as in CI: then it fails)."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import urllib.request

import pytest
from support import PROJECT, Pipeline, free_port, wait_for

from northwind_elt.pipelines.ads import store

MANIFEST = PROJECT / "transform" / "target" / "docs" / "manifest.json"
CATALOG = PROJECT / "transform" / "target" / "docs" / "catalog.json"
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
# Each pipeline's warehouse (the variable prefix of its database).
WAREHOUSE = {"northwind": "ANALYTICS_PG", "people": "PEOPLE_PG", "padam": "PADAM_WH_PG", "ads": "ADS_PG"}
# A model page per dbt warehouse: (pipeline, model, schema); none but Northwind's has declared types,
# so the types its page shows come from its own warehouse's catalog.
MODEL_PAGES = [
    ("people", "people_with_places", "analytics"),
    ("padam", "entity_stats_yearly", "padam"),
    ("northwind", "orders_with_details", "analytics"),
]
PADAM_YEARLY_TYPES = {"year": "integer", "count_values": "bigint", "sum_values": "bigint",
                      "min_values": "bigint", "max_values": "bigint", "mean_values": "double precision"}  # fmt: skip
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def fetch(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read().decode()
    except OSError:
        return None


@pytest.fixture(scope="module")
def built(pipeline: Pipeline, northwind_day: Pipeline, people_day: Pipeline) -> Pipeline:
    """Every warehouse holds its tables: a Northwind and a people day (the session's), a PADAM month
    (the quick size), the ads tables as `nw ads` creates them."""
    quick = {"RANDOM_MAIN_CONTROLLER": "1"}
    for args in (("padam", "up"), ("padam", "insert-month", "2022", "1"), ("padam", "prepare")):
        result = pipeline.nw(*args, extra_env=quick, timeout=900)
        assert result.returncode == 0, (args, result.stdout[-3000:], result.stderr[-3000:])
    with pipeline.connect("ADS_PG") as conn:
        store.ensure_schema(conn)
    return pipeline


@pytest.fixture(scope="module")
def docs_run(built: Pipeline) -> dict[str, str]:
    """`nw docs` serving: the site's address and the command's output once stopped (filled at teardown)."""
    port = free_port()
    server = built.start("docs", "--port", str(port))
    site = {"url": f"http://127.0.0.1:{port}", "port": str(port)}
    try:
        wait_for(lambda: fetch(f"{site['url']}/catalog.json") is not None, "the docs server", proc=server)
        yield site
    finally:
        server.send_signal(signal.SIGINT)
        output = server.communicate(timeout=120)[0]
    assert server.returncode == 0, output[-3000:]
    assert f"dbt docs on http://127.0.0.1:{port}" in output


@pytest.fixture(scope="module")
def docs_site(docs_run: dict[str, str]) -> str:
    return docs_run["url"]


def pipeline_of(node: dict) -> str:
    return node["original_file_path"].split("/")[1]


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


def test_every_pipelines_models_and_sources_live_in_their_own_database_with_its_catalog(
    docs_site: str, built: Pipeline
) -> None:
    manifest = json.loads(fetch(f"{docs_site}/manifest.json"))
    catalog = json.loads(fetch(f"{docs_site}/catalog.json"))
    assert catalog == json.loads(CATALOG.read_text())
    models = [n for n in manifest["nodes"].values() if n["resource_type"] == "model"]
    nodes = models + list(manifest["sources"].values())
    by_pipeline: dict[str, set[str]] = {}
    for node in nodes:
        pipeline = pipeline_of(node)
        by_pipeline.setdefault(pipeline, set()).add(node["unique_id"])
        assert node["database"] == built.env[f"{WAREHOUSE[pipeline]}_DATABASE"], (node["unique_id"], node["database"])
        assert (node.get("relation_name") or "").startswith(f'"{node["database"]}".'), node["unique_id"]
    assert set(by_pipeline) == set(WAREHOUSE), by_pipeline.keys()
    # Every model and every source table is in its warehouse's catalog (built above), with its columns' types.
    catalogued = {**catalog["nodes"], **catalog["sources"]}
    for unique_id in set().union(*by_pipeline.values()):
        if unique_id == "source.nw_transform.ads_landing.ads_backup":
            continue  # created by target-postgres-arrow--ads on the first load, never by nw ads itself
        entry = catalogued.get(unique_id)
        assert entry is not None, f"{unique_id} is not in the catalog"
        documented = manifest["nodes"].get(unique_id) or manifest["sources"][unique_id]
        assert entry["metadata"]["database"] == documented["database"], unique_id
        assert entry["columns"] and all(c["type"] for c in entry["columns"].values()), unique_id
    api_ad_data = catalogued["source.nw_transform.ads.api_ad_data"]["columns"]
    assert {api_ad_data[c]["type"] for c in ("ad_scheme", "shown_at")} == {"jsonb", "timestamp with time zone"}


def test_every_column_of_every_mart_and_export_model_is_described(docs_site: str, built: Pipeline) -> None:
    """Every column the warehouse's catalog lists for a mart or an export, not only the declared ones."""
    manifest = json.loads(fetch(f"{docs_site}/manifest.json"))
    catalog = json.loads(fetch(f"{docs_site}/catalog.json"))
    users_read = [
        n for n in manifest["nodes"].values()
        if n["resource_type"] == "model" and ({"marts", "exports"} & set(n["fqn"]) or "export" in n["tags"])
    ]  # fmt: skip
    assert {pipeline_of(n) for n in users_read} == {"northwind", "people", "padam"}
    undocumented = []
    for node in users_read:
        assert node["description"].strip(), node["unique_id"]
        declared = {name.lower(): column for name, column in node["columns"].items()}
        for name in catalog["nodes"][node["unique_id"]]["columns"]:
            if not (declared.get(name.lower()) or {}).get("description", "").strip():
                undocumented.append(f"{node['name']}.{name}")
    assert not undocumented, f"columns without a description (add one in the model's yml): {undocumented}"


def test_every_source_and_model_is_described_and_measured_sources_show_their_freshness(
    docs_site: str, built: Pipeline
) -> None:
    manifest = json.loads(fetch(f"{docs_site}/manifest.json"))
    models = [n for n in manifest["nodes"].values() if n["resource_type"] == "model"]
    assert all(n["description"].strip() for n in models), [n["name"] for n in models if not n["description"]]
    for source in manifest["sources"].values():
        assert source["description"].strip() and source["source_description"].strip(), source["unique_id"]
        rules = source["config"].get("freshness") or {}
        measured = any((rules.get(level) or {}).get("count") for level in ("warn_after", "error_after"))
        # The session's days are in the past: Northwind's and people's sources are stale (error);
        # the ads tables are empty (error: no row loaded yet). Either way the page says so.
        assert ("**Freshness**, as `nw docs` measured it" in source["description"]) == measured, source["unique_id"]
    orders = manifest["sources"]["source.nw_transform.northwind.orders"]["description"]
    # The newest day loaded into the session's analytics database (other modules load later days).
    with built.connect("ANALYTICS_PG") as conn:
        (newest,) = conn.execute("SELECT max(_day) FROM raw.orders").fetchone()
    assert f"**error**. The newest row was loaded at {newest:%Y-%m-%d} 00:00 UTC" in orders, orders
    loads = manifest["sources"]["source.nw_transform.ads_meta.loads"]["description"]
    # Empty unless the ads modules ran earlier in this session (then their newest load decides).
    with built.connect("ADS_PG") as conn:
        (newest_load,) = conn.execute("SELECT max(committed_at) FROM ads_meta.loads").fetchone()
    if newest_load is None:
        assert "**error**. No row is loaded yet (warn after 2 hours, error after 26 hours)." in loads, loads
    else:
        age = dt.datetime.now(dt.UTC) - newest_load
        status = "pass" if age < dt.timedelta(hours=2) else "warn" if age < dt.timedelta(hours=26) else "error"
        loaded = f"{newest_load.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC"
        assert f"**{status}**. The newest row was loaded at {loaded}" in loads, loads


def browser() -> str:
    found = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    if found is None:
        missing = "no Chromium installed (Debian: apt-get install chromium): the docs pages were not opened"
        if os.environ.get("NW_REQUIRE_BROWSER", "") not in ("", "0"):
            pytest.fail(f"{missing}, and NW_REQUIRE_BROWSER is set (CI installs it)")
        pytest.skip(missing)
    return found


def dump_dom(page: str, profile) -> str:
    command = [browser(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               f"--user-data-dir={profile}", "--virtual-time-budget=20000", "--dump-dom", page]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=300).stdout


def test_a_headless_browser_opens_the_lineage_graph_of_the_mart(docs_site: str, tmp_path) -> None:
    page = f"{docs_site}/#!/model/model.nw_transform.orders_with_details?g_v=1"
    dom = dump_dom(page, tmp_path)
    # The model page lists what the mart depends on; the lineage graph is drawn by cytoscape.
    assert all(f"stg_{table}" in dom for table in SOURCES_READ["northwind"]), dom[-2000:]
    assert "__________cytoscape_container" in dom and 'data-id="layer2-node"' in dom, dom[-2000:]


@pytest.mark.parametrize(("pipeline_name", "model", "schema"), MODEL_PAGES)
def test_a_model_page_names_its_own_database_and_shows_its_column_types(
    docs_site: str, built: Pipeline, tmp_path, pipeline_name: str, model: str, schema: str
) -> None:
    database = built.env[f"{WAREHOUSE[pipeline_name]}_DATABASE"]
    catalog = json.loads(fetch(f"{docs_site}/catalog.json"))
    columns = catalog["nodes"][f"model.nw_transform.{model}"]["columns"]
    types = {name: column["type"] for name, column in columns.items()}
    assert types and all(types.values()), types
    if model == "entity_stats_yearly":
        assert types == PADAM_YEARLY_TYPES
    dom = dump_dom(f"{docs_site}/#!/model/model.nw_transform.{model}", tmp_path)
    # The details' "Relation" (database.schema.name), shown once the model is in the catalog.
    relation = re.search(r"Relation</dt>\s*<dd[^>]*>([^<]*)</dd>", dom)
    assert relation is not None, dom[-3000:]
    assert relation.group(1) == f"{database}.{schema}.{model}"
    # The columns' table: each column's row with its type from the catalog.
    for name, column_type in types.items():
        row = rf">{re.escape(name)}</span>\s*</div>\s*</td>\s*<td>\s*<span[^>]*>{re.escape(column_type)}<"
        assert re.search(row, dom), (name, column_type)
