-- One row per pupil and week: a pupil registered at two school units in a week has their minutes
-- summed. published_at is the newest of the rows, for incremental reprocessing downstream.
-- A table, incremental with a one-week window (macros/incremental_reprocessing.sql): as a view every
-- build grouped the whole school history two or three times over, although a new week changes
-- one week of it. The per-person models read the weeks they recompute through its week_start index.
-- Its input is the gate's record alone (stg_batches, in macros/incremental_reprocessing.sql): the gate
-- publishes a school delivery as one ISO week's partition of raw.school_absence in the transaction
-- that records its decision, so the weeks published since a moment are the periods of the school
-- deliveries decided since then, with no scan of the rows (raw.school_absence has no index on
-- published_at).
-- depends_on: {{ ref('stg_batches') }}
-- depends_on: {{ ref('stg_retention_runs') }}
{%- set reprocess_inputs = [] -%}
{{ reprocessed_by_week(reprocess_inputs, indexed=['week_start', 'published_at', 'processed_at']) }}

with reprocess as (
    {{ reprocess_start(reprocess_inputs) }}
)

select
    person_pseudonym,
    week_start,
    max(home_area_code) as home_area_code,
    sum(scheduled_minutes) as scheduled_minutes,
    sum(valid_absence_minutes) as valid_absence_minutes,
    sum(invalid_absence_minutes) as invalid_absence_minutes,
    max(published_at) as published_at,
    '{{ run_started_at }}'::timestamptz as processed_at
from {{ ref('stg_school_absence') }}
-- on iso_week, the partition key of raw.school_absence, so that older weeks are not even read
-- ('YYYY-Www' sorts as the weeks do)
where iso_week >= (select to_char(from_week, 'IYYY-"W"IW') from reprocess)
group by person_pseudonym, week_start
