"""Ads: a third-party API -> S3 backup (verified) -> Postgres, hourly; old rows archived to S3 daily."""

from northwind_elt.protocol.definition import COMMAND, RUN, Pipeline, Step

ADS = Pipeline(
    name="ads",
    description="ads API -> S3 backup (verified) -> api_ad_data; old rows -> S3 archive",
    dag_id="ads_api_load",
    unit=RUN,
    schedule="12 * * * *",  # hourly at minute 12, like the original
    start_date_env="NW_ADS_DAG_START_DATE",
    steps=(
        Step(
            "ads-load",
            COMMAND,
            airflow_task_id="load",
            command="ads load --date {day} --run-id {run_id}",
            connections=("ADS_PG",),
            dag_id="ads_api_load",
            schedule="12 * * * *",
            description="ads API -> s3://ad-data/backup/<day>/<run id>.jsonl (verified) -> api_ad_data",
        ),
        Step(
            "ads-archive",
            COMMAND,
            airflow_task_id="archive",
            command="ads archive --date {day} --run-id {run_id}",
            connections=("ADS_PG",),
            dag_id="ads_archive",
            schedule="@daily",
            description="api_ad_data rows older than ADS_RETENTION_HOURS -> s3://ad-data/archive/, then deleted",
        ),
    ),
    meltano_schedules=(("hourly-ads-load", "ads-load-scheduled"), ("daily-ads-archive", "ads-archive")),
    meltano_file="pipelines/ads.meltano.yml",
    warehouse="ADS_PG",
    command_group="ads",
    snapshot_source="the ads API",
)
