-- EARS C1, C2, C3 (CDC) on alert_series, one row per area x week x indicator x method.
-- Python reference: ewi/alerts/ears.py (same definitions; tests compare the two).
--   C1: baseline t-7..t-1, statistic (y - mean) / max(sd, ears_min_sigma), alert when > ears_z
--   C2: the same with baseline t-9..t-3 (two-week guard band)
--   C3: sum over t, t-1, t-2 of max(0, C2 statistic - 1), alert when > ears_c3_threshold
-- No alert on a watched count below alert_min_count. score = statistic / threshold (> 1 = alert).
{%- set n = var('ears_baseline_weeks', 7) %}
{%- set z = var('ears_z', 3.0) %}
{%- set h = var('ears_c3_threshold', 2.0) %}
{%- set min_count = var('alert_min_count', 5) %}
with baselines as (
    select
        area_code, week_start, iso_week, indicator, observed,
        {{ ears_baseline('observed', 'c1', 1, n) }},
        {{ ears_baseline('observed', 'c2', 3, n) }}
    from {{ ref('alert_series') }}
),

statistics as (
    select
        *,
        (observed - c1_mean) / c1_sigma as c1_stat,
        (observed - c2_mean) / c2_sigma as c2_stat
    from baselines
),

with_c3 as (
    select
        *,
        coalesce(sum(greatest(c2_stat - 1, 0)) over (
            partition by area_code, indicator order by week_start rows between 2 preceding and 1 preceding
        ), 0) as c3_previous
    from statistics
),

methods as (
    select area_code, week_start, iso_week, indicator, 'ears_c1' as method, observed,
           c1_mean as expected, c1_mean + {{ z }} * c1_sigma as upper_threshold,
           c1_stat as statistic, {{ z }} as threshold, c1_sigma is null as no_baseline
    from with_c3
    union all
    select area_code, week_start, iso_week, indicator, 'ears_c2', observed,
           c2_mean, c2_mean + {{ z }} * c2_sigma,
           c2_stat, {{ z }}, c2_sigma is null
    from with_c3
    union all
    select area_code, week_start, iso_week, indicator, 'ears_c3', observed,
           c2_mean, c2_mean + c2_sigma * (1 + {{ h }} - c3_previous),
           -- greatest() skips NULLs: a week without a C2 statistic has no C3 either
           case when c2_stat is not null then greatest(c2_stat - 1, 0) + c3_previous end, {{ h }}, c2_sigma is null
    from with_c3
)

select
    area_code,
    week_start,
    iso_week,
    indicator,
    method,
    observed,
    expected,
    upper_threshold,
    statistic,
    statistic / threshold as score,
    coalesce(statistic > threshold and observed >= {{ min_count }}, false) as is_alert,
    case
        when observed is null then 'no_data'
        when no_baseline then 'insufficient_history'
        when observed < {{ min_count }} then 'few_cases'
        else 'ok'
    end as status
from methods
