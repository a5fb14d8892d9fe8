-- The day's orders, typed as in the source.
select
    _day,
    order_id::smallint as order_id,
    customer_id::bpchar as customer_id,
    employee_id::smallint as employee_id,
    order_date,
    required_date,
    shipped_date,
    ship_via::smallint as ship_via,
    freight::real as freight,
    ship_name,
    ship_address,
    ship_city,
    ship_region,
    ship_postal_code,
    ship_country
from {{ source('northwind', 'orders') }}
where _day = {{ run_day() }}
