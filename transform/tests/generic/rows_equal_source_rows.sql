{% test rows_equal_source_rows(model, source_model) %}
-- The day has exactly as many rows in the model as in the model it is built from (no
-- row lost or doubled).
select built.n as model_rows, source.n as source_rows
from (select count(*) as n from {{ model }} where _day = {{ run_day() }}) as built
cross join (select count(*) as n from {{ source_model }} where _day = {{ run_day() }}) as source
where built.n <> source.n
{% endtest %}
