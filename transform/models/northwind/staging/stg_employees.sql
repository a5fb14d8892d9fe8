-- The day's employees.
select _day, employee_id::smallint as employee_id, first_name, last_name
from {{ source('northwind', 'employees') }}
where _day = {{ run_day() }}
