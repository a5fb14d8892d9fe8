-- The day's products.
select _day, product_id::smallint as product_id, product_name, category_id::smallint as category_id
from {{ source('northwind', 'products') }}
where _day = {{ run_day() }}
