"""People and places: people.csv + places.csv -> Parquet -> the people database -> summary_output.json."""

from northwind_elt.protocol.definition import EXPORT, EXTRACT, LOAD, TRANSFORM, Pipeline, Step

PEOPLE = Pipeline(
    name="people",
    description="people.csv + places.csv -> Parquet -> the people database -> data/summary_output.json",
    dag_id="people_daily",
    steps=(
        Step("people-extract", EXTRACT, dataset="people", expected_tables=("people", "places")),
        Step("people-load", LOAD, needs=("people-extract",), connections=("PEOPLE_PG",)),
        Step("people-transform", TRANSFORM, needs=("people-load",), connections=("PEOPLE_PG",)),
        Step("people-export", EXPORT, needs=("people-transform",), connections=("PEOPLE_PG",)),
    ),
    all_steps_job="people-daily",
    meltano_schedules=(("daily-people", "people-daily-scheduled"),),
    meltano_file="pipelines/people.meltano.yml",
    outputs=("summary_output.json", "output/{day}/people/"),
    warehouse="PEOPLE_PG",
    dbt_target_path="${NW_DATA_DIR}/dbt/people",
    dbt_tag="people",
    exporter="northwind_elt.protocol.outputs:export_day",
    snapshot_source="people.csv and places.csv",
)
