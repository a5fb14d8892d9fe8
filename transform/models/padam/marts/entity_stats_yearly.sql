-- The whole year (every month loaded), rolled up from the monthly stats.
select
    year,
    sum(count_values)::bigint as count_values,
    sum(sum_values)::bigint as sum_values,
    min(min_values)::bigint as min_values,
    max(max_values)::bigint as max_values,
    sum(sum_values)::float8 / sum(count_values)::float8 as mean_values
from {{ ref('entity_stats_monthly') }}
group by year
