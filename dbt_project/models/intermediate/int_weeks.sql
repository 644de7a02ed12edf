-- The weeks the indicators cover: every ISO week from the earliest to the latest week any source
-- has published, so that weeks without data are explicit rows downstream.
-- The school weeks come from int_pupil_weeks (the same weeks as the rows) through its week_start
-- index: min/max over the raw rows read the whole history on every build.
with school_weeks as (
    select min(week_start) as first_week, max(week_start) as last_week from {{ ref('int_pupil_weeks') }}
),

data_weeks as (
    select first_week, last_week from school_weeks
    union all
    select min(week_start), max(week_start) from {{ ref('stg_referrals') }}
    union all
    select min(week_start), max(week_start) from {{ ref('stg_contacts') }}
)

select
    c.week_start,
    c.iso_week,
    c.is_school_holiday,
    c.week_start between s.first_week and s.last_week as has_school_data
from {{ ref('iso_calendar') }} as c
cross join school_weeks as s
where c.week_start between (select min(first_week) from data_weeks) and (select max(last_week) from data_weeks)
