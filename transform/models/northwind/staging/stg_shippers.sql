-- The day's shippers.
select _day, shipper_id::smallint as shipper_id, company_name
from {{ source('northwind', 'shippers') }}
where _day = {{ run_day() }}
