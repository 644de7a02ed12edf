-- One row per contact with a young person; week_start is the Monday of the contact's week.
select
    contact_id,
    person_pseudonym,
    contact_date,
    date_trunc('week', contact_date)::date as week_start,
    home_area_code,
    birth_year,
    contact_type,
    agency,
    batch_id,
    published_at
from {{ source('raw', 'contacts') }}
