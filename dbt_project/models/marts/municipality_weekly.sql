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

{% if cell_key_method() %}
-- Cell Key Method: the total is a cell of its own, perturbed with its own key (the sum of its persons'
-- keys, i.e. of the areas' keys, mod 1); so it is not the sum of the perturbed areas.
keys as (
    select week_start, indicator, part, mod(sum(cell_key), 1) as cell_key
    from {{ ref('int_area_weekly_cell_keys') }}
    group by week_start, indicator, part
),

controlled as (
    select
        t.week_start, t.iso_week, t.indicator, t.is_share, t.note,
        {{ cell_key_perturbed('t.numerator', 'coalesce(n.cell_key, 0)') }} as numerator,
        case when t.is_share then {{ cell_key_perturbed('t.denominator', 'coalesce(d.cell_key, 0)') }}
             else t.denominator end as denominator,
        false as numerator_is_suppressed,
        false as denominator_is_suppressed
    from totals as t
    left join keys as n on n.week_start = t.week_start and n.indicator = t.indicator and n.part = 'numerator'
    left join keys as d on d.week_start = t.week_start and d.indicator = t.indicator and d.part = 'denominator'
)
{%- else %}
numerators as (
    {{ with_suppression('totals', 'numerator') }}
),

controlled as (
    {{ with_suppression('numerators', 'denominator') }}
)
{%- endif %}

select
    week_start::date as week_start,
    iso_week::text as iso_week,
    indicator::text as indicator,
    {{ published_counts() }}
from controlled
