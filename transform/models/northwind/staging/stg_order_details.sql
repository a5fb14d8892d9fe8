-- The day's order lines from order_details.csv. Keys stay bigint as the CSV contract
-- reads them: a value too large for the source's smallint is then an orphan the day's
-- audit names, not a cast error.
select
    _day,
    order_id,
    product_id,
    unit_price::real as unit_price,
    quantity,
    discount::real as discount
from {{ source('northwind', 'order_details') }}
where _day = {{ run_day() }}
