-- The area register with its youth population (residents aged 6-20), the denominator of the
-- per-1,000 indicators.
select
    area_code,
    area_name,
    area_class,
    pop_total,
    pop_6_12 + pop_13_15 + pop_16_17 + pop_18_20 as youth_population
from {{ ref('areas') }}
