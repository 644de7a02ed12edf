-- One row per pupil and week: a pupil registered at two school units in a week has their minutes
-- summed. published_at is the newest of the rows, for incremental reprocessing.
{{ config(materialized='view') }}

select
    person_pseudonym,
    week_start,
    max(home_area_code) as home_area_code,
    sum(scheduled_minutes) as scheduled_minutes,
    sum(valid_absence_minutes) as valid_absence_minutes,
    sum(invalid_absence_minutes) as invalid_absence_minutes,
    max(published_at) as published_at
from {{ ref('stg_school_absence') }}
group by person_pseudonym, week_start
