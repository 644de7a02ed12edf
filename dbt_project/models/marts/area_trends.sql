-- Rolling 4- and 12-week rates per area and indicator, their change against the same weeks a year
-- (52 weeks) earlier, and the municipality's rolling rates for comparison.
-- Disclosure: computed only from the published (already controlled) counts of
-- area_weekly_indicators and municipality_weekly, and NULL when any week in the window is
-- suppressed, so these rates reveal nothing the weekly tables do not.

with area_rolling as (
    select
        area_code, area_name, week_start, iso_week, indicator, rate_unit, rate,
        {{ rolling_rate(4) }} as rate_4w,
        {{ rolling_rate(12) }} as rate_12w
    from {{ ref('area_weekly_indicators') }}
    window
        w4 as (partition by area_code, indicator order by week_start rows between 3 preceding and current row),
        w12 as (partition by area_code, indicator order by week_start rows between 11 preceding and current row)
),

municipality_rolling as (
    select
        week_start, indicator,
        {{ rolling_rate(4) }} as rate_4w,
        {{ rolling_rate(12) }} as rate_12w
    from {{ ref('municipality_weekly') }}
    window
        w4 as (partition by indicator order by week_start rows between 3 preceding and current row),
        w12 as (partition by indicator order by week_start rows between 11 preceding and current row)
),

with_year_earlier as (
    select
        a.*,
        prev.rate_4w as rate_4w_year_earlier
    from area_rolling as a
    left join area_rolling as prev
        on prev.area_code = a.area_code
        and prev.indicator = a.indicator
        and prev.week_start = a.week_start - 364
)

select
    a.area_code::text as area_code,
    a.area_name::text as area_name,
    a.week_start::date as week_start,
    a.iso_week::text as iso_week,
    a.indicator::text as indicator,
    a.rate_unit::text as rate_unit,
    a.rate::numeric(8, 2) as rate,
    a.rate_4w::numeric(8, 2) as rate_4w,
    a.rate_12w::numeric(8, 2) as rate_12w,
    a.rate_4w_year_earlier::numeric(8, 2) as rate_4w_year_earlier,
    (a.rate_4w - a.rate_4w_year_earlier)::numeric(8, 2) as rate_4w_change_1y,
    m.rate_4w::numeric(8, 2) as municipality_rate_4w,
    m.rate_12w::numeric(8, 2) as municipality_rate_12w
from with_year_earlier as a
left join municipality_rolling as m
    on m.week_start = a.week_start and m.indicator = a.indicator
