{#- The day being built. The entry point pins it in RUN_DATE (Meltano passes it to dbt); a
    `day` var given by hand wins. Read only while dbt runs (`execute`), never while it
    parses: the day is then no part of the parsed project, so dbt parses the project once
    and after that only what changed (partial parsing), not once per day. dbt never decides
    what today is. -#}
{% macro nw_day() -%}
    {%- if not execute -%}
        {{ return("") }}
    {%- endif -%}
    {%- set day = var("day", "") or env_var("RUN_DATE", "") -%}
    {%- if not day -%}
        {{ exceptions.raise_compiler_error("no day to build: set RUN_DATE (nw run pins it), e.g. RUN_DATE=2024-01-15 dbt build") }}
    {%- endif -%}
    {{ return(day) }}
{%- endmacro %}

{#- The day being built as a SQL date literal. Postgres's cast rejects a malformed or
    impossible day, so a bad day fails the run instead of matching nothing. -#}
{% macro run_day() -%}
    '{{ nw_day() }}'::date
{%- endmacro %}
