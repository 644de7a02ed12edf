-- Every area x every week x five indicators, disclosure-controlled (macros/disclosure_control.sql):
-- primary suppression of counts 1-4 and secondary suppression across the areas of a week and
-- indicator, so that municipality_weekly minus the published areas reveals no suppressed cell.
with counts as (
    select c.*, a.area_name
    from {{ ref('int_area_weekly_counts') }} as c
    inner join {{ ref('stg_areas') }} as a on a.area_code = c.area_code
),

numerators as (
    {{ with_suppression('counts', 'numerator', ['week_start', 'indicator']) }}
),

controlled as (
    {{ with_suppression('numerators', 'denominator', ['week_start', 'indicator']) }}
)

select
    area_code::text as area_code,
    area_name::text as area_name,
    week_start::date as week_start,
    iso_week::text as iso_week,
    indicator::text as indicator,
    {{ published_counts() }}
from controlled
