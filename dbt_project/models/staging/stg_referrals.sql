-- One row per report of concern; week_start is the Monday of the week it was received.
select
    referral_id,
    person_pseudonym,
    received_date,
    date_trunc('week', received_date)::date as week_start,
    home_area_code,
    birth_year,
    reporter_category,
    concern_category,
    batch_id,
    published_at
from {{ source('raw', 'referrals') }}
