{#- The day being built, as a SQL date literal. The entry point pins it and Meltano passes
    it as the `day` var; dbt never decides what today is. Postgres's cast rejects a
    malformed or impossible day, so a bad var fails the run instead of matching nothing. -#}
{% macro run_day() -%}
    {%- if execute and not var("day", "") -%}
        {{ exceptions.raise_compiler_error("no day to build: pass it as a var, e.g. dbt build --vars '{day: \"2024-01-15\"}' (nw run pins it)") }}
    {%- endif -%}
    '{{ var("day") }}'::date
{%- endmacro %}
