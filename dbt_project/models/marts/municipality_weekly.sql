-- The five indicators for the whole municipality: the sum of the areas' unsuppressed counts (every
-- person is counted in exactly one area), with primary suppression only (see area_weekly_indicators
-- for the secondary suppression that protects the areas against this total).
with totals as (
    select
        week_start,
        iso_week,
        indicator,
        sum(numerator) as numerator,
        sum(denominator) as denominator,
        bool_and(is_share) as is_share,
        case
            when bool_or(note = 'no_school_data') then 'no_school_data'
            when bool_and(is_share) and sum(denominator) = 0 then 'no_scheduled_minutes'
        end as note
    from {{ ref('int_area_weekly_counts') }}
    group by week_start, iso_week, indicator
),

numerators as (
    {{ with_suppression('totals', 'numerator') }}
),

controlled as (
    {{ with_suppression('numerators', 'denominator') }}
)

select
    week_start::date as week_start,
    iso_week::text as iso_week,
    indicator::text as indicator,
    {{ published_counts() }}
from controlled
