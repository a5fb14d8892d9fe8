{% test value_at_least(model, column_name, minimum) %}
-- Rows whose value is below the minimum (NULLs are for not_null to judge).
select *
from {{ model }}
where {{ column_name }} < {{ minimum }}
{% endtest %}

{% test value_at_most(model, column_name, maximum) %}
-- Rows whose value is above the maximum (NULLs are for not_null to judge).
select *
from {{ model }}
where {{ column_name }} > {{ maximum }}
{% endtest %}
