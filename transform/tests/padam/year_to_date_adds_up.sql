-- Every (year, month) row of the year to date equals the staging rows of that year through
-- that month (count, sum, min, max, mean), aggregated here from staging, not from the
-- daily or monthly models; rows on one side only fail.
with per_month as (
    select
        extract(year from day)::int as year,
        extract(month from day)::int as month,
        count(*)::bigint as count_values,
        sum(value)::bigint as sum_values,
        min(value)::bigint as min_values,
        max(value)::bigint as max_values
    from {{ ref('stg_padam_entity') }}
    group by 1, 2
),

expected as (
    select
        m.year,
        m.month,
        sum(p.count_values)::bigint as count_values,
        sum(p.sum_values)::bigint as sum_values,
        min(p.min_values)::bigint as min_values,
        max(p.max_values)::bigint as max_values
    from per_month as m
    join per_month as p on p.year = m.year and p.month <= m.month
    group by m.year, m.month
)

select
    coalesce(e.year, y.year) as year,
    coalesce(e.month, y.month) as month,
    e.count_values as expected_count,
    y.count_values as model_count
from expected as e
full outer join {{ ref('entity_stats_year_to_date') }} as y using (year, month)
where e.count_values is distinct from y.count_values
    or e.sum_values is distinct from y.sum_values
    or e.min_values is distinct from y.min_values
    or e.max_values is distinct from y.max_values
    or e.sum_values::float8 / e.count_values is distinct from y.mean_values
