-- Every area x every week x five indicators, disclosure-controlled (macros/disclosure_control.sql):
-- primary suppression of counts 1-4 and secondary suppression across the areas of a week and
-- indicator, so that municipality_weekly minus the published areas reveals no suppressed cell.
with counts as (
    select c.*, a.area_name
    from {{ ref('int_area_weekly_counts') }} as c
    inner join {{ ref('stg_areas') }} as a on a.area_code = c.area_code
),

{% if cell_key_method() %}
-- Cell Key Method instead (macros/cell_key.sql): every count from persons perturbed, none suppressed;
-- the youth population (a register figure, not persons) is published as it is.
controlled as (
    select
        c.area_code, c.area_name, c.week_start, c.iso_week, c.indicator, c.is_share, c.note,
        {{ cell_key_perturbed('c.numerator', 'coalesce(n.cell_key, 0)') }} as numerator,
        case when c.is_share then {{ cell_key_perturbed('c.denominator', 'coalesce(d.cell_key, 0)') }}
             else c.denominator end as denominator,
        false as numerator_is_suppressed,
        false as denominator_is_suppressed
    from counts as c
    left join {{ ref('int_area_weekly_cell_keys') }} as n
        on n.area_code = c.area_code and n.week_start = c.week_start and n.indicator = c.indicator
        and n.part = 'numerator'
    left join {{ ref('int_area_weekly_cell_keys') }} as d
        on d.area_code = c.area_code and d.week_start = c.week_start and d.indicator = c.indicator
        and d.part = 'denominator'
)
{%- else %}
numerators as (
    {{ with_suppression('counts', 'numerator', ['week_start', 'indicator']) }}
),

controlled as (
    {{ with_suppression('numerators', 'denominator', ['week_start', 'indicator']) }}
)
{%- endif %}

select
    area_code::text as area_code,
    area_name::text as area_name,
    week_start::date as week_start,
    iso_week::text as iso_week,
    indicator::text as indicator,
    {{ published_counts() }}
from controlled
