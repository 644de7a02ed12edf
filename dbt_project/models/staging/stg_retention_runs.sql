-- When retention last cut the pseudonymous history: the weeks before kept_from have no raw or
-- per-person rows left, so the area counts of those weeks, and of the weeks whose trailing window
-- reaches back into them, are kept as they were counted (macros/incremental_reprocessing.sql).
select max(kept_from) as kept_from
from {{ source('audit', 'retention_runs') }}
