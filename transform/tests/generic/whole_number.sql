{% test whole_number(model, column_name) %}
-- Rows whose value has a fractional part, or is not finite (NULLs are for not_null).
select *
from {{ model }}
where {{ column_name }} <> trunc({{ column_name }})
    or {{ column_name }} in ('NaN'::float8, 'Infinity'::float8, '-Infinity'::float8)
{% endtest %}
