{% test relationships_same_day(model, column_name, to, field) %}
-- Rows of the day whose key has no parent row in the same day's snapshot (whole rows,
-- so the stored failures show which lines they are).
with child as (
    select * from {{ model }}
)

select child.*
from child
left join {{ to }} as parent
    on parent.{{ field }} = child.{{ column_name }}
    and parent._day = child._day
where child._day = {{ run_day() }}
    and child.{{ column_name }} is not null
    and parent.{{ field }} is null
{% endtest %}
