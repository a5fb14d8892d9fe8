{{ config(schema='build') }}
-- Write: the day's order lines with their order and its customer, product, category,
-- employee and shipper, in a private relation (schema analytics_build). The day's tests
-- (audit) run on this relation; only when they pass does dbt build the published mart
-- from it (publish). A failed audit leaves the published day as it was.
with details as (
    select * from {{ ref('stg_order_details') }}
),

orders as (
    select * from {{ ref('stg_orders') }}
),

customers as (
    select * from {{ ref('stg_customers') }}
),

products as (
    select * from {{ ref('stg_products') }}
),

categories as (
    select * from {{ ref('stg_categories') }}
),

employees as (
    select * from {{ ref('stg_employees') }}
),

shippers as (
    select * from {{ ref('stg_shippers') }}
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
    round(details.unit_price::numeric * details.quantity * (1 - details.discount::numeric), 2) as line_total,
    -- Added after the original columns, so existing exports only gain columns at the end.
    customers.company_name as customer_company_name,
    products.product_name,
    categories.category_name,
    employees.first_name || ' ' || employees.last_name as employee_name,
    shippers.company_name as shipper_name
from details
-- Left joins keep every line; the relationship tests name lines without a parent.
left join orders on orders.order_id = details.order_id
left join customers on customers.customer_id = orders.customer_id
left join products on products.product_id = details.product_id
left join categories on categories.category_id = products.category_id
left join employees on employees.employee_id = orders.employee_id
left join shippers on shippers.shipper_id = orders.ship_via
