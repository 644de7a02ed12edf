-- One row per pupil, ISO week and school unit, as published; week_start is the ISO week's Monday.
select
    person_pseudonym,
    iso_week,
    to_date(iso_week, 'IYYY-"W"IW') as week_start,
    school_unit_code,
    home_area_code,
    birth_year,
    scheduled_minutes,
    valid_absence_minutes,
    invalid_absence_minutes,
    batch_id,
    published_at
from {{ source('raw', 'school_absence') }}
