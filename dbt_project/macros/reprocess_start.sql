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

{#- The first two CTEs of every per-person model: where reprocessing starts, and the weeks it
    recomputes (`school_weeks_only`: only weeks the school source covers). Inputs are cut with the
    scalar subquery (select from_week from reprocess), never a join, so PostgreSQL reads them through
    their week_start index. -#}
{% macro reprocessed_weeks(reprocess_inputs, school_weeks_only=false) -%}
reprocess as (
    {{ reprocess_start(reprocess_inputs) }}
),

weeks as (
    select w.week_start
    from {{ ref('int_weeks') }} as w
    where w.week_start >= (select from_week from reprocess){{ ' and w.has_school_data' if school_weeks_only }}
)
{%- endmacro %}
