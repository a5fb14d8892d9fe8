-- The mart has exactly one row per line of the day's CSV (as loaded into raw).
with mart as (
    select count(*) as n from {{ ref('orders_with_details') }} where _day = {{ run_day() }}
),

csv as (
    select count(*) as n from {{ source('northwind', 'order_details') }} where _day = {{ run_day() }}
)

select mart.n as mart_rows, csv.n as csv_rows
from mart cross join csv
where mart.n <> csv.n or csv.n = 0
