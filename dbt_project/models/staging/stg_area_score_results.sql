-- The area score (ewi.alerts.run_area_score writes it during the build, from the Farrington results):
-- one row per area and week. Unsuppressed inputs: read only by area_alerts, which withholds the score
-- where a component's figures are withheld.
select
    area_code,
    week_start,
    method,
    components,
    rising,
    score,
    is_alert,
    status
from {{ source('alerts', 'area_score_results') }}
