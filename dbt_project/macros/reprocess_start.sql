{# The first week an incremental per-person model must (re)compute: everything on a first build
   or full refresh, else what reprocess_from() says (macros/incremental_reprocessing.sql). Used as
   the `reprocess` CTE of those models. #}
{% macro reprocess_start(inputs) -%}
    {% if is_incremental() %}
    select {{ reprocess_from(this, inputs) }} as from_week
    {% else %}
    select date '0001-01-01' as from_week
    {% endif %}
{%- endmacro %}

{#- The configuration every incrementally reprocessed per-week model shares: incremental (the folder
    intermediate gives the strategy replace_from), its inputs under meta for reprocess_from(), and one
    index per column of `indexed`: week_start and processed_at, so that the reprocessing window's
    max(week_start) / max(processed_at), its delete and the tests of the rows a build wrote
    (macros/test_scope.sql) read a few weeks, not the history. -#}
{% macro reprocessed_by_week(reprocess_inputs, indexed=['week_start', 'processed_at']) -%}
    {%- set indexes = [] -%}
    {%- for column in indexed -%}
        {%- do indexes.append({'columns': [column]}) -%}
    {%- endfor -%}
    {{ config(materialized='incremental', indexes=indexes, meta={'reprocess_inputs': reprocess_inputs}) }}
{%- endmacro %}
