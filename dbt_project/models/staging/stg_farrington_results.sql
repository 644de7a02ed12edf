-- The Farrington detector's results (ewi.alerts.run_farrington writes them during the build), with
-- the columns area_alerts publishes after disclosure control. Unsuppressed: never published as is.
select
    area_code,
    indicator,
    week_start,
    observed,
    expected,
    upper_threshold,
    score,
    is_alert,
    status,
    years_used,
    years_configured
from {{ source('alerts', 'farrington_results') }}
