{{
    config(
        materialized='incremental',
        unique_key='_day',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        tags=['export'],
    )
}}
-- The summary: people per country of birth, per day. Exported (without _day) as
-- data/summary_output.json: {"Scotland":8048,"Northern Ireland":1952}.
select _day, country, count(*) as people
from {{ ref('people_with_places') }}
where _day = {{ run_day() }}
group by _day, country
