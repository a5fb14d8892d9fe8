{#- The day's audit, decided when a test runs rather than when the project is parsed (see
    run_day.sql): every test judges the day being built only (`where: "_day = __run_day__"`),
    and a test whose meta says `audit_by_day` keeps its failing rows in the day's own schema,
    <schema>_YYYY_MM_DD (e.g. analytics_audit_2024_08_01), so one day's failures never
    replace another's. -#}

{#- dbt's documented hook for a test's `where` filter, with the day put in at run time. -#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get("where", "") -%}
    {%- if where -%}
        {%- set where = where | replace("__run_day__", run_day()) -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ where }}) dbt_subquery
        {%- endset -%}
        {%- do return(filtered) -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}

{#- The day's audit schema, created before any node runs (an on-run-start hook): the tests
    run in several threads, and CREATE SCHEMA IF NOT EXISTS races when the schema is new. -#}
{% macro create_audit_schema() -%}
    {%- if execute -%}
        {%- for unique_id in selected_resources -%}
            {%- set node = graph.nodes.get(unique_id) -%}
            {%- if node and node.resource_type == "test" and (node.config.meta or {}).get("audit_by_day") -%}
                {%- set schema = node.schema ~ "_" ~ (nw_day() | replace("-", "_")) -%}
                {%- do adapter.create_schema(api.Relation.create(database=node.database, schema=schema)) -%}
                {{ return("") }}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
    {{ return("") }}
{%- endmacro %}

{#- The schema a test's failing rows go to. -#}
{% macro audit_schema(schema) -%}
    {%- if (config.get("meta") or {}).get("audit_by_day") -%}
        {{ return(schema ~ "_" ~ (nw_day() | replace("-", "_"))) }}
    {%- endif -%}
    {{ return(schema) }}
{%- endmacro %}

{#- dbt-core 1.11's test materialization (global_project/macros/materializations/tests/test.sql),
    changed in one place: the failing rows are stored in audit_schema(schema) (created by the
    on-run-start hook create_audit_schema). -#}
{%- materialization test, default -%}

  {% set relations = [] %}
  {% set limit = config.get('limit') %}
  {% set sql_header = config.get('sql_header') if flags.REQUIRE_SQL_HEADER_IN_TEST_CONFIGS else none %}

  {% set sql_with_limit %}
    {{ get_limit_subquery_sql(sql, limit) }}
  {% endset %}

  {% if should_store_failures() %}

    {% set identifier = model['alias'] %}
    {% set store_schema = audit_schema(schema) %}
    {% set old_relation = adapter.get_relation(database=database, schema=store_schema, identifier=identifier) %}

    {% set store_failures_as = config.get('store_failures_as') %}
    {% if store_failures_as == none %}{% set store_failures_as = 'table' %}{% endif %}
    {% if store_failures_as not in ['table', 'view'] %}
        {{ exceptions.raise_compiler_error(
            "'" ~ store_failures_as ~ "' is not a valid value for `store_failures_as`. "
            "Accepted values are: ['ephemeral', 'table', 'view']"
        ) }}
    {% endif %}

    {% set target_relation = api.Relation.create(
        identifier=identifier, schema=store_schema, database=database, type=store_failures_as) -%} %}

    {% if old_relation %}
        {% do adapter.drop_relation(old_relation) %}
    {% endif %}

    {% call statement(auto_begin=True) %}
        {% if sql_header %}{{ sql_header }}{% endif %}
        {{ get_create_sql(target_relation, sql_with_limit) }}
    {% endcall %}

    {% do relations.append(target_relation) %}

    {% set main_sql %}
        select *
        from {{ target_relation }}
    {% endset %}

    {{ adapter.commit() }}

  {% else %}

      {% set main_sql = sql_with_limit %}

  {% endif %}

  {% set fail_calc = config.get('fail_calc') %}
  {% set warn_if = config.get('warn_if') %}
  {% set error_if = config.get('error_if') %}

  {% call statement('main', fetch_result=True) -%}

    {% if sql_header %}{{ sql_header }}{% endif %}
    {{ get_test_sql(main_sql, fail_calc, warn_if, error_if, limit=none)}}

  {%- endcall %}

  {{ return({'relations': relations}) }}

{%- endmaterialization -%}
