-- Disclosure control: no published row shows a numerator or denominator between 1 and 4.
{% set m = var('disclosure_min_count') %}
select 'area_weekly_indicators' as model, indicator, week_start
from {{ ref('area_weekly_indicators') }}
where numerator between 1 and {{ m - 1 }} or denominator between 1 and {{ m - 1 }}
union all
select 'municipality_weekly', indicator, week_start
from {{ ref('municipality_weekly') }}
where numerator between 1 and {{ m - 1 }} or denominator between 1 and {{ m - 1 }}
