-- The day's candidate has exactly one row per line of the day's CSV (as loaded into raw).
with candidate as (
    select count(*) as n from {{ ref('orders_with_details_candidate') }}
),

csv as (
    select count(*) as n from {{ source('northwind', 'order_details') }} where _day = {{ run_day() }}
)

select candidate.n as candidate_rows, csv.n as csv_rows
from candidate cross join csv
where candidate.n <> csv.n or csv.n = 0
