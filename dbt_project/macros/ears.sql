{#-
  EARS (CDC) baseline window over the zero-filled area x week grid of alert_series: the `length`
  weeks ending `lag` weeks before the current one (C1: lag 1; C2 and C3: lag 3, i.e. a two-week
  guard band). Rows are consecutive weeks, so a ROWS frame is a frame of weeks.
-#}
{% macro ears_window(lag, length) -%}
    (partition by area_code, indicator order by week_start
     rows between {{ lag + length - 1 }} preceding and {{ lag }} preceding)
{%- endmacro %}


{#- Mean, sample sd (floored at min_sigma) and number of weeks with data in an EARS baseline;
    NULL mean/sigma when fewer than 3 weeks have data (R's earsC minimum baseline). -#}
{% macro ears_baseline(value, prefix, lag, length) -%}
    case when count({{ value }}) over {{ ears_window(lag, length) }} >= 3
         then avg({{ value }}) over {{ ears_window(lag, length) }} end as {{ prefix }}_mean,
    case when count({{ value }}) over {{ ears_window(lag, length) }} >= 3
         then greatest(stddev_samp({{ value }}) over {{ ears_window(lag, length) }},
                       {{ var('ears_min_sigma', 1.0) }}) end as {{ prefix }}_sigma
{%- endmacro %}

{#-
  The dbt var alert_rolling_weeks as a mapping indicator -> weeks summed into the watched count
  (indicators not listed: 1, the weekly count). One number is the older form, for referrals and
  contacts. Python twin: ewi.alerts.series.rolling_weeks_setting.
-#}
{% macro alert_rolling_weeks() -%}
    {%- set value = var('alert_rolling_weeks', {'referrals': 3, 'contacts': 3}) -%}
    {%- if value is mapping -%}
        {{ return(value) }}
    {%- else -%}
        {{ return({'referrals': value | int, 'contacts': value | int}) }}
    {%- endif -%}
{%- endmacro %}
