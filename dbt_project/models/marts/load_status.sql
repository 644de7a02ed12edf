-- Per source: the last published period, when it was published, and the gate's decision on the
-- source's latest delivery (from audit.batches). Every source has a row, delivered or not.
with sources as (
    select source from (values ('school_absence'), ('referrals'), ('contacts')) as s (source)
),

last_published as (
    select distinct on (source)
        source, period, week_start, decided_at, rows_published
    from {{ ref('stg_batches') }}
    where status = 'published'
    order by source, period desc, decided_at desc
),

last_delivery as (
    select distinct on (source)
        source, period, status, reason, received_at, decided_at
    from {{ ref('stg_batches') }}
    where source is not null
    order by source, received_at desc, batch_id desc
)

select
    s.source::text as source,
    p.period::text as last_published_period,
    p.week_start::date as last_published_week_start,
    p.decided_at::timestamptz as last_published_at,
    p.rows_published::integer as last_published_rows,
    d.period::text as last_delivery_period,
    d.received_at::timestamptz as last_delivery_received_at,
    d.status::text as gate_result,
    d.reason::text as gate_reason
from sources as s
left join last_published as p on p.source = s.source
left join last_delivery as d on d.source = s.source
