{{ config(enabled=var('disclosure_method', 'suppression') == 'cell_key') }}
-- Cell keys of every count int_area_weekly_counts makes from persons (macros/cell_key.sql): the sum
-- of the persons' record keys mod 1, per area x week x indicator x part (numerator, denominator).
-- Built only with disclosure_method cell_key. Never published.
with persons as (
    select area_code, week_start, {{ record_key('person_pseudonym') }} as k,
           is_chronic_absence, is_invalid_absence, has_schedule
    from {{ ref('int_absence_person_weeks') }}
),

signals as (
    select week_start, {{ record_key('person_pseudonym') }} as k,
           has_referral, referral_area_code, has_contact, contact_area_code, is_multi_signal, area_code_12w
    from {{ ref('int_person_signal_weeks') }}
),

keyed as (
    select area_code, week_start, 'chronic_absence' as indicator, 'numerator' as part, k from persons where is_chronic_absence
    union all
    select area_code, week_start, 'invalid_absence', 'numerator', k from persons where is_invalid_absence
    union all
    select area_code, week_start, 'chronic_absence', 'denominator', k from persons where has_schedule
    union all
    select area_code, week_start, 'invalid_absence', 'denominator', k from persons where has_schedule
    union all
    select referral_area_code, week_start, 'referrals', 'numerator', k from signals where has_referral
    union all
    select contact_area_code, week_start, 'contacts', 'numerator', k from signals where has_contact
    union all
    select area_code_12w, week_start, 'multi_signal', 'numerator', k from signals where is_multi_signal
)

select area_code, week_start, indicator, part, mod(sum(k), 1) as cell_key
from keyed
group by area_code, week_start, indicator, part
