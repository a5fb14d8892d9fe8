-- The day's product categories.
select _day, category_id::smallint as category_id, category_name
from {{ source('northwind', 'categories') }}
where _day = {{ run_day() }}
