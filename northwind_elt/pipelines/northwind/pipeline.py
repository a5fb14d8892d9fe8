"""Northwind daily: the source Postgres and order_details.csv -> Parquet -> analytics -> orders_with_details."""

from northwind_elt.protocol.definition import EXPORT, EXTRACT, LOAD, TRANSFORM, Pipeline, Step

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
    all_steps_job="daily",
    meltano_schedules=(("daily-northwind", "daily-scheduled"),),
    meltano_file="pipelines/northwind.meltano.yml",
    outputs=("output/{day}/orders_with_details.csv", "output/{day}/orders_with_details.json"),
    dbt_tag="northwind",
    dbt_target_path="${NW_DATA_DIR}/dbt/northwind",
    exporter="northwind_elt.protocol.outputs:export_day",
    snapshot_source="the source Postgres and order_details.csv",
)
