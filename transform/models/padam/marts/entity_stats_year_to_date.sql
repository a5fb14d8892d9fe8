-- The year through each month (months 1..month): what the yearly file holds after that
-- month is exported.
select
    year,
    month,
    (sum(count_values) over through_month)::bigint as count_values,
    (sum(sum_values) over through_month)::bigint as sum_values,
    min(min_values) over through_month as min_values,
    max(max_values) over through_month as max_values,
    (sum(sum_values) over through_month)::float8 / (sum(count_values) over through_month)::float8 as mean_values
from {{ ref('entity_stats_monthly') }}
window through_month as (partition by year order by month rows between unbounded preceding and current row)
