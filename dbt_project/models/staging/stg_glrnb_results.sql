-- The negative-binomial GLR detector's results (ewi.alerts.run_glrnb writes them during the build,
-- after the Farrington task), in area_alerts' terms: the threshold is the largest watched count this
-- week that would not have raised the alarm (cases needed - 1, so "alert when observed is above
-- it" holds as for Farrington), the score the statistic over its alarm threshold c_ARL.
-- Unsuppressed: never published as is.
select
    area_code,
    indicator,
    week_start,
    observed,
    expected,
    cases_needed - 1 as upper_threshold,
    statistic / c_arl as score,
    statistic,
    c_arl,
    alpha,
    is_alert,
    status,
    chart_start
from {{ source('alerts', 'glrnb_results') }}
