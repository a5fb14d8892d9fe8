-- One row per order line per loaded day, typed as in the CSV contract.
select
    _day,
    order_id::smallint as order_id,
    product_id::smallint as product_id,
    unit_price::real as unit_price,
    quantity::smallint as quantity,
    discount::real as discount
from {{ source('northwind', 'order_details') }}
