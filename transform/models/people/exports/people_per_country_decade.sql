{{
    config(
        materialized='incremental',
        unique_key='_day',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        tags=['export'],
    )
}}
-- People per country of birth and decade of birth (1830 = born 1830 to 1839), per day.
select _day, country, (extract(year from date_of_birth)::int / 10) * 10 as decade, count(*) as people
from {{ ref('people_with_places') }}
where _day = {{ run_day() }}
group by _day, country, decade
