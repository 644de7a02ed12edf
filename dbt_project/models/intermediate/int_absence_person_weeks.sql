-- Per pupil and week: absence over the trailing 4 weeks (the week and the 3 before it) and the
-- chronic_absence (>= 10 %) and invalid_absence (>= 5 %) flags. A pupil counts from the first to the
-- third week after their last record, in the area of their latest record in the window.
-- Holidays: when the window has no scheduled minutes the flags are NULL (has_schedule false), so a
-- holiday never looks like zero absence. Thresholds are compared in integers: exactly 10 % counts.
-- depends_on: {{ ref('stg_batches') }}
-- depends_on: {{ ref('stg_retention_runs') }}
{%- set reprocess_inputs = [['int_pupil_weeks', 'published_at']] -%}
{{ reprocessed_by_week(reprocess_inputs) }}

with {{ reprocessed_weeks(reprocess_inputs, school_weeks_only=true) }},

-- A scalar subquery, not a join with `reprocess`: PostgreSQL then reads only these weeks through
-- the week_start index instead of the whole history.
pupil_weeks as (
    select p.*
    from {{ ref('int_pupil_weeks') }} as p
    where p.week_start >= (select from_week from reprocess) - 21
),

windows as (
    select
        p.person_pseudonym,
        w.week_start,
        (array_agg(p.home_area_code order by p.week_start desc))[1] as area_code,
        sum(p.scheduled_minutes) as scheduled_minutes_4w,
        sum(p.valid_absence_minutes + p.invalid_absence_minutes) as absence_minutes_4w,
        sum(p.invalid_absence_minutes) as invalid_absence_minutes_4w
    from weeks as w
    inner join pupil_weeks as p
        on p.week_start between w.week_start - 21 and w.week_start
    group by p.person_pseudonym, w.week_start
)

select
    person_pseudonym,
    week_start,
    area_code,
    scheduled_minutes_4w::bigint as scheduled_minutes_4w,
    absence_minutes_4w::bigint as absence_minutes_4w,
    invalid_absence_minutes_4w::bigint as invalid_absence_minutes_4w,
    scheduled_minutes_4w > 0 as has_schedule,
    case when scheduled_minutes_4w > 0 then absence_minutes_4w * 10 >= scheduled_minutes_4w end
        as is_chronic_absence,
    case when scheduled_minutes_4w > 0 then invalid_absence_minutes_4w * 20 >= scheduled_minutes_4w end
        as is_invalid_absence,
    '{{ run_started_at }}'::timestamptz as processed_at
from windows
