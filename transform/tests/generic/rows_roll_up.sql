{% test rows_roll_up(model, to, group_by, key=none) %}
-- Groups whose count, sum, min, max or mean differ from an aggregation of `to`'s rows
-- (columns day and value), or that exist on one side only. `key` names the model's
-- columns that `group_by`'s expressions produce (default: the same names).
{%- set key = key or group_by %}
with expected as (
    select
        {%- for expression in group_by %}
        {{ expression }} as {{ key[loop.index0] }},
        {%- endfor %}
        count(*)::bigint as count_values,
        sum(value)::bigint as sum_values,
        min(value)::bigint as min_values,
        max(value)::bigint as max_values
    from {{ to }}
    group by {% for expression in group_by %}{{ loop.index }}{{ ", " if not loop.last }}{% endfor %}
)
select
    {% for column in key %}coalesce(e.{{ column }}, m.{{ column }}) as {{ column }}, {% endfor %}
    e.count_values as expected_count, m.count_values as model_count,
    e.sum_values as expected_sum, m.sum_values as model_sum
from expected as e
full outer join {{ model }} as m using ({{ key | join(', ') }})
where e.count_values is distinct from m.count_values
    or e.sum_values is distinct from m.sum_values
    or e.min_values is distinct from m.min_values
    or e.max_values is distinct from m.max_values
    or e.sum_values::float8 / e.count_values is distinct from m.mean_values
{% endtest %}
