-- Every area x every week x five indicators with its unsuppressed numerator and denominator.
-- Never published: the marts apply disclosure control to these counts.
-- Absence shares: denominator = pupils with scheduled minutes in the trailing 4 weeks; when it is 0
-- (holiday weeks, or weeks without school data) the rate is NULL and `note` says why.
-- Other indicators: denominator = youth population (aged 6-20) from the area register.
-- Incremental like the per-person models it counts (macros/incremental_reprocessing.sql): a week's
-- counts are those of its per-person rows, so a build recounts the weeks after the newest one
-- counted and every week whose per-person rows a build rewrote since. A changed area register
-- (populations, areas) changes every week: ewi/transform.py makes that build a full refresh.
-- depends_on: {{ ref('stg_batches') }}
-- depends_on: {{ ref('stg_retention_runs') }}
{%- set reprocess_inputs = [
    ['int_absence_person_weeks', 'processed_at'],
    ['int_person_signal_weeks', 'processed_at'],
] -%}
{{ reprocessed_by_week(reprocess_inputs) }}
-- Never rebuilt whole, not even by a full refresh: the counts of weeks whose pseudonymous rows
-- retention removed (ewi/retention.py) cannot be counted again, and the marts read them. A full
-- refresh recounts every week from the first one whose per-person rows it rewrote.
{{ config(full_refresh=false) }}

with reprocess as (
    {{ reprocess_start(reprocess_inputs) }}
),

spine as (
    select a.area_code, a.youth_population, w.week_start, w.iso_week, w.has_school_data
    from {{ ref('stg_areas') }} as a
    cross join {{ ref('int_weeks') }} as w
    where w.week_start >= (select from_week from reprocess)
),

absence as (
    select
        area_code,
        week_start,
        count(*) filter (where has_schedule) as pupils,
        count(*) filter (where is_chronic_absence) as chronic,
        count(*) filter (where is_invalid_absence) as invalid
    from {{ ref('int_absence_person_weeks') }}
    where week_start >= (select from_week from reprocess)
    group by area_code, week_start
),

signals as (
    select area_code, week_start, sum(referrals) as referrals, sum(contacts) as contacts, sum(multi) as multi
    from (
        select referral_area_code as area_code, week_start, 1 as referrals, 0 as contacts, 0 as multi
        from {{ ref('int_person_signal_weeks') }}
        where has_referral and week_start >= (select from_week from reprocess)
        union all
        select contact_area_code, week_start, 0, 1, 0
        from {{ ref('int_person_signal_weeks') }}
        where has_contact and week_start >= (select from_week from reprocess)
        union all
        select area_code_12w, week_start, 0, 0, 1
        from {{ ref('int_person_signal_weeks') }}
        where is_multi_signal and week_start >= (select from_week from reprocess)
    ) as person_signals
    group by area_code, week_start
),

joined as (
    select
        s.*,
        coalesce(a.pupils, 0) as pupils,
        coalesce(a.chronic, 0) as chronic,
        coalesce(a.invalid, 0) as invalid,
        coalesce(g.referrals, 0) as referrals,
        coalesce(g.contacts, 0) as contacts,
        coalesce(g.multi, 0) as multi
    from spine as s
    left join absence as a on a.area_code = s.area_code and a.week_start = s.week_start
    left join signals as g on g.area_code = s.area_code and g.week_start = s.week_start
),

indicators as (
    select area_code, week_start, iso_week, 'chronic_absence' as indicator, chronic as numerator,
           pupils as denominator, has_school_data, true as is_share
    from joined
    union all
    select area_code, week_start, iso_week, 'invalid_absence', invalid, pupils, has_school_data, true from joined
    union all
    select area_code, week_start, iso_week, 'referrals', referrals, youth_population, true, false from joined
    union all
    select area_code, week_start, iso_week, 'contacts', contacts, youth_population, true, false from joined
    union all
    select area_code, week_start, iso_week, 'multi_signal', multi, youth_population, true, false from joined
)

select
    area_code,
    week_start,
    iso_week,
    indicator,
    numerator::integer as numerator,
    denominator::integer as denominator,
    is_share,
    case
        when not has_school_data then 'no_school_data'
        when is_share and denominator = 0 then 'no_scheduled_minutes'
    end as note,
    '{{ run_started_at }}'::timestamptz as processed_at
from indicators
