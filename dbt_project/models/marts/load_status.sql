-- Per source: the last published period, when it was published, and the gate's decision on the
-- source's latest delivery (from audit.batches), as a status and a reason code: the dashboard role
-- reads this table, and a reason's text is for auditors. Every source has a row, delivered or not.
with sources as (
    select source from (values ('school_absence'), ('referrals'), ('contacts')) as s (source)
),

last_published as (
    select distinct on (source)
        source, period, week_start, decided_at, rows_published
    from {{ ref('stg_batches') }}
    where status = 'published'
    order by source asc, period desc, decided_at desc
),

-- The latest delivery the gate has decided on: one still being audited while the build ran is
-- decided moments later, long before anyone reads this table, so `pending` here would be wrong.
last_delivery as (
    select distinct on (source)
        source, period, status, reason, received_at, decided_at
    from {{ ref('stg_batches') }}
    where source is not null and status <> 'pending'
    order by source asc, received_at desc, batch_id desc
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
    -- The reason's code only (`missing_columns`, `checks failed` as `checks_failed`, ...): the
    -- reason text is for auditors, and the release reason after the code is an engineer's free text.
    replace(substring(d.reason from '^([a-z][a-z_ ]{0,39}):'), ' ', '_')::text as gate_reason_code
from sources as s
left join last_published as p on p.source = s.source
left join last_delivery as d on d.source = s.source
