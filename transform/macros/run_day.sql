{#- The day being built, as a SQL date expression. Postgres's cast rejects a
    malformed or impossible day, so a bad var fails the run instead of matching nothing. -#}
{% macro run_day() -%}
    coalesce(nullif('{{ var("day") }}', '')::date, (now() at time zone 'utc')::date)
{%- endmacro %}
