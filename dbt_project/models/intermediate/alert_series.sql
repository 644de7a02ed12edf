-- The series the alert methods watch, one row per area x week x indicator (the grid of
-- int_area_weekly_counts, so weeks without events are 0). Never published: counts are unsuppressed.
-- Python twin: ewi/alerts/series.py (tests/test_alerts_dbt.py keeps the two equal). Why each series
-- is what it is: docs/alerts.md.
--   absence shares: weekly count of flagged pupils; NULL where nobody had scheduled minutes or the
--                   week has no school data, and in the first 3 weeks (trailing window incomplete)
--   referrals, contacts: trailing sum over alert_rolling_weeks[indicator] weeks (single weeks hold
--                   0-3 youths); NULL until the window is complete
--   multi_signal: weekly count (already a trailing 12-week flag); NULL in the first 11 weeks
{%- set rolling = alert_rolling_weeks() %}
{%- set sizes = rolling.values() | select('gt', 1) | unique | sort | list %}
{%- set warm_up = {'chronic_absence': 3, 'invalid_absence': 3, 'multi_signal': 11} %}
with counts as (
    select
        area_code,
        week_start,
        iso_week,
        indicator,
        denominator,
        case when note is not null or (is_share and coalesce(denominator, 0) <= 0) then null else numerator end
            as weekly_count,
        (week_start - min(week_start) over ()) / 7 as week_no
    from {{ ref('int_area_weekly_counts') }}
),

watched as (
    select
        *,
        case
            {%- for indicator, n in rolling.items() if n > 1 %}
            when indicator = '{{ indicator }}' then
                case when count(weekly_count) over rolling_{{ n }} = {{ n }}
                    then sum(weekly_count) over rolling_{{ n }} end
            {%- endfor %}
            else weekly_count
        end as watched_count,
        case indicator
            {%- for indicator in ['chronic_absence', 'invalid_absence', 'referrals', 'contacts', 'multi_signal'] %}
            when '{{ indicator }}' then {{ warm_up.get(indicator, 0) + rolling.get(indicator, 1) - 1 }}
            {%- endfor %}
            else 0
        end as warm_up_weeks
    from counts
    {%- for n in sizes %}
    {{ 'window' if loop.first else ',' }} rolling_{{ n }} as (
        partition by area_code, indicator order by week_start rows between {{ n - 1 }} preceding and current row
    )
    {%- endfor %}
)

select
    area_code,
    week_start,
    iso_week,
    indicator,
    (case when week_no >= warm_up_weeks then watched_count end)::double precision as observed,
    (case when denominator > 0 then denominator end)::double precision as population
from watched
