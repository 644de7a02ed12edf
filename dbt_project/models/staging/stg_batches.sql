-- The ingest gate's decisions, with the delivery's ISO week as a date.
select
    batch_id,
    source,
    period,
    case when period ~ '^[0-9]{4}-W[0-9]{2}$' then to_date(period, 'IYYY-"W"IW') end as week_start,
    status,
    reason,
    received_at,
    decided_at,
    rows_published
from {{ source('audit', 'batches') }}
