{% test rows_equal_source_rows(model, source_model) %}
-- The model has exactly as many rows as the model it is built from (no row lost or doubled).
select built.n as model_rows, source.n as source_rows
from (select count(*) as n from {{ model }}) as built
cross join (select count(*) as n from {{ source_model }}) as source
where built.n <> source.n
{% endtest %}
