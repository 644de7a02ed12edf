{#- A rolling rate over the last `weeks` rows of window w<weeks>, from published counts only:
    NULL unless every week in the window has a published numerator and denominator. -#}
{% macro rolling_rate(weeks) -%}
    case
        when count(numerator) over w{{ weeks }} = {{ weeks }}
            and count(denominator) over w{{ weeks }} = {{ weeks }}
            and sum(denominator) over w{{ weeks }} > 0
        then round(
            (case when rate_unit = 'percent' then 100.0 else 1000.0 end)
            * sum(numerator) over w{{ weeks }} / sum(denominator) over w{{ weeks }}, 2)
    end
{%- endmacro %}
