-- Rolled up from the daily stats: the mean is the total sum over the total count, never
-- a mean of daily means.
select
    year,
    month,
    sum(count_values)::bigint as count_values,
    sum(sum_values)::bigint as sum_values,
    min(min_values)::bigint as min_values,
    max(max_values)::bigint as max_values,
    sum(sum_values)::float8 / sum(count_values)::float8 as mean_values
from {{ ref('entity_stats_daily') }}
group by year, month
