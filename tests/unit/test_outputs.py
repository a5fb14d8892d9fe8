"""The dbt-driven exporter's reading of dbt's manifest: which models, columns, rows and files (no database)."""

from __future__ import annotations

import copy
import datetime as dt

import pytest

from northwind_elt.protocol.outputs import (
    Column,
    ExportError,
    OrderKey,
    _fill,
    _Query,
    exported_models,
)


def column(name: str, data_type: str, export: object = True) -> dict:
    meta = {} if export is True else {"export": export}
    return {"name": name, "data_type": data_type, "meta": meta, "config": {"meta": meta}}


def model(name: str, tags: list[str], columns: list[dict], export: dict | None, schema: str = "analytics") -> dict:
    meta = {"export": export} if export is not None else {}
    return {
        "resource_type": "model",
        "name": name,
        "alias": name,
        "schema": schema,
        "tags": tags,
        "columns": {c["name"]: c for c in columns},
        "config": {"meta": meta, "contract": {"enforced": True}},
        "meta": meta,
    }


# A manifest as dbt writes it, cut down to what the exporter reads: two pipelines' models,
# one model not tagged for export, one test node.
MANIFEST = {
    "nodes": {
        "model.p.lines": model(
            "lines",
            ["shop", "export"],
            [
                column("_day", "date", export=False),
                column("order_id", "bigint"),
                column("product_id", "bigint"),
                column("price", "real"),
            ],
            {
                "rows": {"_day": "day"},
                "order_by": ["order_id", "product_id"],
                "refuse_empty": True,
                "reported_rows": "count",
                "files": [{"path": "lines.csv", "format": "csv"}, {"path": "lines.json", "format": "json_lines"}],
            },
        ),
        "model.p.per_country": model(
            "per_country",
            ["shop", "export"],
            [column("_day", "date", export=False), column("country", "text"), column("people", "bigint")],
            {
                "rows": {"_day": "day"},
                "reported_rows": {"sum": "people"},
                "files": [
                    {"path": "shop/per_country.csv", "format": "csv"},
                    {
                        "path": "shop/per_country.json",
                        "format": "json_object",
                        "key": "country",
                        "value": "people",
                        "order_by": ["people desc", "country"],
                        "newest_day_copy": "per_country.json",
                    },
                ],
            },
        ),
        "model.p.daily": model(
            "daily",
            ["stats", "export"],
            [
                column("day", "date", export=False),
                column("year", "integer"),
                column("month", "integer"),
                column("day_of_month", "integer", export={"as": "day"}),
                column("total", "bigint"),
            ],
            {
                "rows": {"year": "year", "month": "month"},
                "files": [
                    {
                        "path": "year={year}/month={month}/day={day_of_month}/daily_{year}_{month}_{day_of_month}.csv",
                        "format": "csv",
                        "one_file_per": ["day_of_month"],
                    }
                ],
            },
            schema="stats",
        ),
        "model.p.year_to_date": model(
            "year_to_date",
            ["stats", "export"],
            [column("year", "integer"), column("month", "integer", export=False), column("total", "bigint")],
            {
                "rows": {"year": "year", "month": "month"},
                "write_order": 1,
                "files": [{"path": "y.csv", "format": "csv"}],
            },
            schema="stats",
        ),
        "model.p.staging": model("staging", ["shop"], [column("order_id", "bigint")], None),
        "test.p.unique_lines": {"resource_type": "test", "name": "unique_lines", "tags": ["shop", "export"]},
    }
}


def test_the_models_tagged_export_and_the_pipeline_tag_are_exported_and_nothing_else() -> None:
    assert [m.name for m in exported_models(MANIFEST, "shop")] == ["lines", "per_country"]
    assert [m.name for m in exported_models(MANIFEST, "stats")] == ["daily", "year_to_date"]


def test_columns_are_the_contracts_in_its_order_less_the_unexported_and_under_their_export_names() -> None:
    lines, per_country = exported_models(MANIFEST, "shop")
    assert lines.columns == (
        Column("order_id", "order_id"),
        Column("product_id", "product_id"),
        Column("price", "price"),
    )
    assert per_country.columns == (Column("country", "country"), Column("people", "people"))
    daily = exported_models(MANIFEST, "stats")[0]
    assert [(c.name, c.written_as) for c in daily.columns] == [
        ("year", "year"),
        ("month", "month"),
        ("day_of_month", "day"),
        ("total", "total"),
    ]


def test_rows_order_files_and_reported_rows_come_from_meta_export() -> None:
    lines, per_country = exported_models(MANIFEST, "shop")
    assert (lines.schema, lines.relation, lines.qualified) == ("analytics", "lines", "analytics.lines")
    assert lines.rows == (("_day", "day"),)
    assert lines.refuse_empty and lines.reported_rows == "count"
    assert [(f.path, f.format) for f in lines.files] == [("lines.csv", "csv"), ("lines.json", "json_lines")]
    # The model's order_by is every file's, unless the file has its own.
    assert lines.files[0].order_by == lines.files[1].order_by == (OrderKey("order_id"), OrderKey("product_id"))
    csv_file, object_file = per_country.files
    assert csv_file.order_by == (OrderKey("country"), OrderKey("people")), "default: every written column"
    assert object_file.order_by == (OrderKey("people", descending=True), OrderKey("country"))
    assert (object_file.key, object_file.value, object_file.newest_day_copy) == (
        "country",
        "people",
        "per_country.json",
    )
    assert per_country.reported_rows == ("sum", "people") and not per_country.refuse_empty


def test_models_are_written_in_write_order_then_name() -> None:
    manifest = copy.deepcopy(MANIFEST)
    manifest["nodes"]["model.p.daily"]["config"]["meta"]["export"]["write_order"] = 2
    assert [m.name for m in exported_models(manifest, "stats")] == ["year_to_date", "daily"]


def test_meta_outside_config_as_older_dbt_writes_it_is_read_too() -> None:
    manifest = copy.deepcopy(MANIFEST)
    node = manifest["nodes"]["model.p.lines"]
    node["config"]["meta"] = {}
    node["columns"]["_day"]["config"]["meta"] = {}
    assert [c.name for c in exported_models(manifest, "shop")[0].columns] == ["order_id", "product_id", "price"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda n: n["columns"]["price"].update(data_type=None), r"1 column \['price'\] has no data_type"),
        (lambda n: n.update(columns={}), "declares no columns"),
        (lambda n: n["config"]["meta"].clear() or n["meta"].clear(), "tagged export but its meta declares no export"),
        (lambda n: n["meta"]["export"]["files"][1].update(format="xml"), r"files\[1\].format 'xml' is not one of"),
        (lambda n: n["meta"]["export"].update(order_by=["order_id", "nope"]), "names 'nope', not a column"),
        (lambda n: n["meta"]["export"].update(order_by=["order_id sideways"]), "is not 'column' or 'column asc|desc'"),
        (lambda n: n["meta"]["export"]["files"][0].update(path="../../etc/x.csv"), "relative path without '..'"),
        (lambda n: n["meta"]["export"]["files"][0].update(path="/tmp/x.csv"), "relative path without '..'"),
        (lambda n: n["meta"]["export"].update(reported_rows="max"), "reported_rows must be count or"),
        (lambda n: n["meta"]["export"].update(order=["order_id"]), r"has 1 unknown key \['order'\]"),
        (lambda n: n["meta"]["export"].update(rows={"day": "day"}), "rows must map columns of its contract"),
        (lambda n: n["columns"]["price"]["meta"].update(export="yes"), "must be false or {as: name}"),
    ],
)
def test_a_wrong_yaml_is_refused_naming_the_model_and_what_is_wrong(change, message: str) -> None:
    manifest = copy.deepcopy(MANIFEST)
    node = manifest["nodes"]["model.p.lines"]
    # config.meta and meta are one dict in dbt's manifest; keep them one here too.
    node["meta"] = node["config"]["meta"]
    for entry in node["columns"].values():
        entry["meta"] = entry["config"]["meta"]
    change(node)
    with pytest.raises(ExportError, match=message) as raised:
        exported_models(manifest, "shop")
    assert "lines" in raised.value.cause


def test_a_pipeline_without_exported_models_is_refused_with_the_fix() -> None:
    with pytest.raises(ExportError, match="no model tagged export and people") as raised:
        exported_models(MANIFEST, "people")
    assert "tag the models to export" in raised.value.fix


def test_the_query_of_a_day_selects_the_written_columns_of_that_day_in_the_declared_order() -> None:
    lines = exported_models(MANIFEST, "shop")[0]
    query = _Query(lines, {"day": dt.date(2024, 1, 15)}, {})
    t = '"_export_rows"'
    assert query.rows(lines.files[0].order_by).as_string(None) == (
        f'SELECT {t}."order_id" AS "order_id", {t}."product_id" AS "product_id", {t}."price" AS "price" '
        f'FROM "analytics"."lines" AS {t} WHERE {t}."_day" = \'2024-01-15\'::date '
        f'ORDER BY {t}."order_id", {t}."product_id"'
    )


def test_the_query_of_one_file_per_day_filters_the_unit_and_the_group_and_renames_columns() -> None:
    daily = exported_models(MANIFEST, "stats")[0]
    query = _Query(daily, {"year": 2022, "month": 1}, {"day_of_month": 31})
    t = '"_export_rows"'
    text = query.rows((OrderKey("total", descending=True),)).as_string(None)
    assert f'{t}."day_of_month" AS "day"' in text
    assert text.endswith(
        f'FROM "stats"."daily" AS {t} WHERE {t}."year" = 2022 AND {t}."month" = 1 AND {t}."day_of_month" = 31 '
        f'ORDER BY {t}."total" DESC'
    )


def test_a_unit_without_the_field_the_rows_name_is_refused() -> None:
    lines = exported_models(MANIFEST, "shop")[0]
    with pytest.raises(ExportError, match="names unit field 'day'"):
        _Query(lines, {"year": 2022}, {})


def test_file_paths_are_filled_from_the_unit_and_the_group_and_refuse_unknown_names() -> None:
    daily = exported_models(MANIFEST, "stats")[0]
    template = daily.files[0].path
    assert _fill(template, {"year": "2022", "month": "1", "day_of_month": "9"}, daily) == (
        "year=2022/month=1/day=9/daily_2022_1_9.csv"
    )
    with pytest.raises(ExportError, match=r"names \['day_of_month'\]"):
        _fill(template, {"year": "2022", "month": "1"}, daily)
