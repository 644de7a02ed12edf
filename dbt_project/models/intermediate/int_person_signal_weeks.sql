-- Per person and week, for everyone with a signal in the trailing 12 weeks: a referral / a contact
-- in the week (and the area of the week's latest such record), and multi_signal: at least two of
-- {invalid_absence flag, a referral, a contact} within the trailing 12 weeks, counted in the area
-- of the person's latest record (any source) in those 12 weeks.
-- depends_on: {{ ref('stg_batches') }}
-- depends_on: {{ ref('stg_retention_runs') }}
{%- set reprocess_inputs = [
    ['stg_referrals', 'published_at'],
    ['stg_contacts', 'published_at'],
    ['int_pupil_weeks', 'published_at'],
    ['int_absence_person_weeks', 'processed_at'],
] -%}
{{ reprocessed_by_week(reprocess_inputs) }}

with {{ reprocessed_weeks(reprocess_inputs) }},

-- Every input is cut to the weeks the recomputed weeks' 12-week windows reach, in each branch and as
-- a scalar subquery: PostgreSQL pushes neither a join with `reprocess` nor a subquery through a
-- union into the scans, and would read the whole history.
recent_signals as (
    select person_pseudonym, week_start, 'invalid_absence' as signal
    from {{ ref('int_absence_person_weeks') }}
    where is_invalid_absence and week_start >= (select from_week from reprocess) - 77
    union all
    select person_pseudonym, week_start, 'referral' from {{ ref('stg_referrals') }}
    where week_start >= (select from_week from reprocess) - 77
    union all
    select person_pseudonym, week_start, 'contact' from {{ ref('stg_contacts') }}
    where week_start >= (select from_week from reprocess) - 77
),

person_weeks as (
    select
        s.person_pseudonym,
        w.week_start,
        bool_or(s.signal = 'referral' and s.week_start = w.week_start) as has_referral,
        bool_or(s.signal = 'contact' and s.week_start = w.week_start) as has_contact,
        bool_or(s.signal = 'invalid_absence') as has_invalid_absence_12w,
        count(distinct s.signal) as signal_types_12w
    from weeks as w
    inner join recent_signals as s
        on s.week_start between w.week_start - 77 and w.week_start
    group by s.person_pseudonym, w.week_start
),

-- Every record of a person, dated, to find the area of their latest record in a window. A school
-- week counts as of its Friday.
records as (
    select person_pseudonym, week_start, week_start + 4 as record_date, home_area_code, 0 as source_order
    from {{ ref('int_pupil_weeks') }}
    where week_start >= (select from_week from reprocess) - 77
    union all
    select person_pseudonym, week_start, received_date, home_area_code, 1 from {{ ref('stg_referrals') }}
    where week_start >= (select from_week from reprocess) - 77
    union all
    select person_pseudonym, week_start, contact_date, home_area_code, 2 from {{ ref('stg_contacts') }}
    where week_start >= (select from_week from reprocess) - 77
),

latest_area_12w as (
    select distinct on (pw.person_pseudonym, pw.week_start)
        pw.person_pseudonym,
        pw.week_start,
        rec.home_area_code as area_code_12w
    from person_weeks as pw
    inner join records as rec
        on rec.person_pseudonym = pw.person_pseudonym
        and rec.week_start between pw.week_start - 77 and pw.week_start
    order by pw.person_pseudonym asc, pw.week_start asc,
        rec.record_date desc, rec.source_order desc, rec.home_area_code asc
),

referral_area as (
    select distinct on (person_pseudonym, week_start)
        person_pseudonym, week_start, home_area_code as referral_area_code
    from {{ ref('stg_referrals') }}
    where week_start >= (select from_week from reprocess)
    order by person_pseudonym asc, week_start asc, received_date desc, referral_id desc
),

contact_area as (
    select distinct on (person_pseudonym, week_start)
        person_pseudonym, week_start, home_area_code as contact_area_code
    from {{ ref('stg_contacts') }}
    where week_start >= (select from_week from reprocess)
    order by person_pseudonym asc, week_start asc, contact_date desc, contact_id desc
)

select
    pw.person_pseudonym,
    pw.week_start,
    pw.has_referral,
    ra.referral_area_code,
    pw.has_contact,
    ca.contact_area_code,
    pw.has_invalid_absence_12w,
    pw.signal_types_12w::integer as signal_types_12w,
    pw.signal_types_12w >= 2 as is_multi_signal,
    la.area_code_12w,
    '{{ run_started_at }}'::timestamptz as processed_at
from person_weeks as pw
inner join latest_area_12w as la
    on la.person_pseudonym = pw.person_pseudonym and la.week_start = pw.week_start
left join referral_area as ra
    on pw.has_referral and ra.person_pseudonym = pw.person_pseudonym and ra.week_start = pw.week_start
left join contact_area as ca
    on pw.has_contact and ca.person_pseudonym = pw.person_pseudonym and ca.week_start = pw.week_start
