{#- The method the dashboard calls "an alert" for the indicator in `indicator_column`: var
    ewi_default_alert_method is one method name for every indicator (the older form) or a mapping
    indicator -> method with a `default` entry for the rest (chosen per indicator by the evaluation,
    docs/alert_evaluation.md). -#}
{% macro default_alert_method(indicator_column) -%}
    {%- set chosen = var('ewi_default_alert_method', 'farrington') -%}
    {%- if chosen is mapping -%}
        case {{ indicator_column }}
        {%- for indicator, method in chosen.items() if indicator != 'default' %}
            when '{{ indicator }}' then '{{ method }}'
        {%- endfor %}
            else '{{ chosen.get("default", "farrington") }}'
        end
    {%- else -%}
        '{{ chosen }}'
    {%- endif -%}
{%- endmacro %}
