{{
    config(
        materialized='incremental',
        unique_key='_day',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        tags=['export'],
    )
}}
-- People per county (and its country) of birth, per day.
select _day, country, county, count(*) as people
from {{ ref('people_with_places') }}
where _day = {{ run_day() }}
group by _day, country, county
