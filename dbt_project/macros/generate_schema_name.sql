{#- Custom schemas are used verbatim (staging, intermediate, published_next, ...) instead of
    dbt's default "<target schema>_<custom schema>": the roles' grants are given per schema. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
