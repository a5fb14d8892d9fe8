"""`nw docs`'s site: one dbt run per warehouse merged into one site (each pipeline's nodes and catalog
entries from its own warehouse's run), freshness results written into the sources' descriptions, and
the project's yml describing every model and source table (the catalog-wide check of every mart and
export column is tests/e2e/project/test_docs.py)."""

from __future__ import annotations

from pathlib import Path

import yaml

from northwind_elt.entry import docs

TRANSFORM = Path(__file__).resolve().parents[2] / "transform"


def node(unique_id: str, path: str, database: str, **extra) -> dict:
    return {"unique_id": unique_id, "original_file_path": path, "database": database, "resource_type": "model"} | extra


def manifest_of(database: str) -> dict:
    """What one warehouse's `dbt docs generate` writes: every node, all named in that run's database."""
    return {
        "nodes": {
            "model.p.orders": node("model.p.orders", "models/northwind/marts/orders.sql", database),
            "model.p.summary": node("model.p.summary", "models/people/exports/summary.sql", database),
            "test.p.yearly_adds_up": node("test.p.yearly_adds_up", "tests/padam/adds_up.sql", database),
        },
        "sources": {
            "source.p.northwind.orders": node("source.p.northwind.orders", "models/northwind/_sources.yml", database)
            | {"resource_type": "source", "description": "Orders."},
        },
        "unit_tests": {},
        "exposures": {"exposure.p.files": {"database": None}},
    }


def catalog_of(database: str, *unique_ids: str) -> dict:
    return {
        "metadata": {"generated_at": "now"},
        "nodes": {u: {"metadata": {"database": database}, "columns": {}} for u in unique_ids if "source." not in u},
        "sources": {u: {"metadata": {"database": database}, "columns": {}} for u in unique_ids if "source." in u},
        "errors": None,
    }


def test_each_pipelines_nodes_and_catalog_entries_come_from_its_own_warehouses_run() -> None:
    analytics = docs.Warehouse("ANALYTICS_PG", "dev", ("northwind",))
    people = docs.Warehouse("PEOPLE_PG", "people", ("people",))
    padam = docs.Warehouse("PADAM_WH_PG", "padam", ("padam",))
    fresh = {
        "unique_id": "source.p.northwind.orders",
        "status": "warn",
        "max_loaded_at": "2024-01-15T00:00:00Z",
        "snapshotted_at": "2024-01-16T07:30:00Z",
        "max_loaded_at_time_ago_in_s": 31.5 * 3600,
        "criteria": {"warn_after": {"count": 30, "period": "hour"}, "error_after": {"count": 54, "period": "hour"}},
    }
    runs = [
        docs.Generated(
            analytics,
            manifest_of("analytics"),
            catalog_of("analytics", "model.p.orders", "model.p.summary", "source.p.northwind.orders"),
            [fresh],
        ),
        # A run catalogues what it can see in its own database; only its own pipelines' entries are kept.
        docs.Generated(people, manifest_of("people"), catalog_of("people", "model.p.summary", "model.p.orders")),
        docs.Generated(padam, manifest_of("padam_warehouse"), catalog_of("padam_warehouse")),
    ]
    manifest, catalog = docs.merge(runs)
    assert {u: n["database"] for u, n in manifest["nodes"].items()} == {
        "model.p.orders": "analytics",
        "model.p.summary": "people",
        "test.p.yearly_adds_up": "padam_warehouse",
    }
    assert {u: e["metadata"]["database"] for u, e in catalog["nodes"].items()} == {
        "model.p.orders": "analytics",
        "model.p.summary": "people",
    }
    assert set(catalog["sources"]) == {"source.p.northwind.orders"} and catalog["errors"] is None
    assert manifest["exposures"] == runs[0].manifest["exposures"]
    assert manifest["sources"]["source.p.northwind.orders"]["description"] == (
        "Orders.\n\n**Freshness**, as `nw docs` measured it (2024-01-16 07:30 UTC): **warn**. The newest row was "
        "loaded at 2024-01-15 00:00 UTC, 32 hours before the check (warn after 30 hours, error after 54 hours)."
    )
    # The runs stay as dbt wrote them.
    assert runs[0].manifest["sources"]["source.p.northwind.orders"]["description"] == "Orders."


def test_freshness_says_when_a_table_is_empty_or_could_not_be_measured() -> None:
    empty = {
        "status": "error",
        "max_loaded_at": "0001-01-01T00:00:00+00:00",
        "snapshotted_at": "2026-12-07T12:00:00+00:00",
        "max_loaded_at_time_ago_in_s": 6.4e10,
        "criteria": {"warn_after": {"count": 2, "period": "hour"}, "error_after": {"count": 1, "period": "day"}},
    }
    said = docs.freshness_text(empty)
    assert said.endswith("**error**. No row is loaded yet (warn after 2 hours, error after 1 day)."), said
    assert docs.summarise_freshness([empty]) == "1 source: 1 error; no row loaded yet"
    failed = {"status": docs.NOT_MEASURED, "error": 'relation "raw.orders" does not exist'}
    assert docs.freshness_text(failed) == (
        '**Freshness**, as `nw docs` measured it (this run): **not measured** (relation "raw.orders" does not exist).'
    )
    assert docs.summarise_freshness([failed, failed]) == "2 sources: 2 not measured"


def test_every_pipeline_folder_of_the_dbt_project_is_documented_in_its_own_warehouse() -> None:
    found = {w.name: (w.prefix, w.target) for w in docs.warehouses()}
    assert found == {
        "northwind": ("ANALYTICS_PG", "dev"),
        "people": ("PEOPLE_PG", "people"),
        "padam": ("PADAM_WH_PG", "padam"),
        "ads": ("ADS_PG", "ads"),
    }
    folders = {p.name for p in (TRANSFORM / "models").iterdir() if p.is_dir()}
    assert folders == set(found)  # a folder of no registered pipeline would be left out of the site
    profile = yaml.safe_load((TRANSFORM / "profiles.yml").read_text())["nw_transform"]["outputs"]
    assert {target for _, target in found.values()} <= set(profile)


def _yml_entries() -> tuple[dict[str, dict], list[tuple[str, dict]]]:
    models, sources = {}, []
    for path in (TRANSFORM / "models").rglob("*.yml"):
        content = yaml.safe_load(path.read_text()) or {}
        models |= {m["name"]: m for m in content.get("models", [])}
        sources += [(path.name, s) for s in content.get("sources", [])]
    return models, sources


def test_every_model_and_source_table_has_a_description_in_the_projects_yml() -> None:
    models, sources = _yml_entries()
    sql = {p.stem for p in (TRANSFORM / "models").rglob("*.sql")}
    assert sql <= set(models), f"models without a yml entry: {sorted(sql - set(models))}"
    assert not [name for name, m in models.items() if not (m.get("description") or "").strip()]
    for _, source in sources:
        assert (source.get("description") or "").strip(), source["name"]
        blank = [t["name"] for t in source["tables"] if not (t.get("description") or "").strip()]
        assert not blank, f"source {source['name']}: tables without a description: {blank}"
        for table in source["tables"]:
            assert all((c.get("description") or "").strip() for c in table.get("columns", [])), table["name"]


def test_every_declared_column_of_a_mart_or_export_has_a_description() -> None:
    models, _ = _yml_entries()
    users_read = {p.stem for p in (TRANSFORM / "models").rglob("*.sql") if {"marts", "exports"} & set(p.parts)}
    missing = [
        f"{name}.{column['name']}"
        for name in sorted(users_read)
        for column in models[name].get("columns", [])
        if not (column.get("description") or "").strip()
    ]
    assert not missing, missing
