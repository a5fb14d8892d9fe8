-- Count, sum, min, max and mean of value per calendar day. Incremental: a run recomputes
-- only the days that received rows from a merge newer than the last one it saw, in full
-- (every row of such a day is re-read, so a replaced row never counts twice).
{{ config(materialized='incremental', unique_key='day', incremental_strategy='delete+insert') }}

with changed_days as (
    select distinct day
    from {{ ref('stg_padam_entity') }}
    {% if is_incremental() %}
    where _batch_id > (select coalesce(max(last_batch_id), 0) from {{ this }})
    {% endif %}
)

select
    e.day,
    extract(year from e.day)::int as year,
    extract(month from e.day)::int as month,
    extract(day from e.day)::int as day_of_month,
    count(*)::bigint as count_values,
    sum(e.value)::bigint as sum_values,
    min(e.value)::bigint as min_values,
    max(e.value)::bigint as max_values,
    sum(e.value)::float8 / count(*) as mean_values,
    max(e._batch_id) as last_batch_id
from {{ ref('stg_padam_entity') }} as e
join changed_days using (day)
group by e.day
