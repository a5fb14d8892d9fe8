{{
    config(
        materialized='incremental',
        unique_key='_day',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
    )
}}
-- One row per person of the day with the county and country of their place of birth.
-- A left join: a person without a place keeps a NULL country and fails the audit above,
-- never vanishes from the counts. Incremental on _day: building day D replaces D's rows
-- only, and dbt builds it only once the staging audit passed.
select
    people._day,
    people.given_name,
    people.family_name,
    people.date_of_birth,
    people.place_of_birth,
    places.county,
    places.country
from {{ ref('stg_people') }} as people
left join {{ ref('stg_places') }} as places on places.city = people.place_of_birth
