{{
    config(
        materialized='incremental',
        unique_key='_day',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
    )
}}
-- One row per order line of the day, with its order's columns and the line total.
-- Incremental on _day: building day D replaces D's rows and keeps every other day.
with details as (
    select * from {{ ref('stg_order_details') }}
    where _day = {{ run_day() }}
),

orders as (
    select * from {{ ref('stg_orders') }}
    where _day = {{ run_day() }}
)

select
    details._day,
    details.order_id,
    details.product_id,
    orders.customer_id,
    orders.employee_id,
    orders.order_date,
    orders.required_date,
    orders.shipped_date,
    orders.ship_via,
    orders.freight,
    orders.ship_name,
    orders.ship_address,
    orders.ship_city,
    orders.ship_region,
    orders.ship_postal_code,
    orders.ship_country,
    details.unit_price,
    details.quantity,
    details.discount,
    -- In numeric, not real: money must not pick up binary-float noise.
    round(details.unit_price::numeric * details.quantity * (1 - details.discount::numeric), 2) as line_total
from details
-- A left join keeps every line; the relationship test catches lines without an order.
left join orders on orders.order_id = details.order_id
