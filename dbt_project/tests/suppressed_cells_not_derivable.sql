{{ config(enabled=var("disclosure_method", "suppression") != "cell_key") }}
-- (With the Cell Key Method nothing is suppressed and totals are perturbed cells of their own.)
-- Secondary suppression: where the municipality total of a week and indicator is published, the
-- suppressed areas must not be recoverable from it: not a single suppressed area, and the
-- suppressed areas together (total minus published areas) not between 1 and 4.
{% set m = var('disclosure_min_count') %}
{% for column in ['numerator', 'denominator'] %}
{% if not loop.first %}union all{% endif %}
select '{{ column }}' as count_column, a.week_start, a.indicator
from {{ ref('area_weekly_indicators') }} as a
inner join {{ ref('municipality_weekly') }} as m
    on m.week_start = a.week_start and m.indicator = a.indicator
where m.{{ column }} is not null
group by a.week_start, a.indicator, m.{{ column }}
having count(*) filter (where a.{{ column }} is null) = 1
    or (m.{{ column }} - coalesce(sum(a.{{ column }}), 0)) between 1 and {{ m - 1 }}
{% endfor %}
