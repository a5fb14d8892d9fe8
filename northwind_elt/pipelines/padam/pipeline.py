"""PADAM monthly stats: generated production rows -> the warehouse (incremental) -> stats CSVs per month."""

from northwind_elt.protocol.definition import COMMAND, MONTH, Pipeline, Step

PADAM = Pipeline(
    name="padam",
    description="PADAM entity rows -> warehouse (incremental) -> daily, monthly and yearly stats CSVs",
    dag_id="padam_monthly",
    unit=MONTH,
    schedule="@monthly",
    start_date="2022-01-01",
    start_date_env="NW_PADAM_DAG_START_DATE",
    steps=(
        Step(
            "padam-insert-month",
            COMMAND,
            airflow_task_id="generate",
            meltano_job=None,
            command="padam insert-month {year} {month}",
            connections=("PADAM_PROD_PG",),
            description="generate the month's entity rows into production",
        ),
        Step(
            "padam-prepare",
            COMMAND,
            airflow_task_id="prepare",
            needs=("padam-insert-month",),
            command="padam prepare",
            connections=("PADAM_PROD_PG", "PADAM_WH_PG"),
            description="production -> warehouse (incremental), then the stats models",
        ),
        Step(
            "padam-export",
            COMMAND,
            airflow_task_id="export",
            needs=("padam-prepare",),
            meltano_job=None,
            command="padam export {year} {month}",
            connections=("PADAM_PROD_PG", "PADAM_WH_PG"),
            description="the month's stats files and the year to date",
        ),
    ),
    meltano_file="pipelines/padam.meltano.yml",
    outputs=("padam/exports/year={year}/",),
    warehouse="PADAM_WH_PG",
    dbt_target_path="${NW_DATA_DIR}/dbt/padam",
    dbt_tag="padam",
    command_group="padam",
)
