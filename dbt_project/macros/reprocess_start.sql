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
