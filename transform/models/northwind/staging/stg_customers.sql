-- The day's customers.
select _day, customer_id::bpchar as customer_id, company_name
from {{ source('northwind', 'customers') }}
where _day = {{ run_day() }}
