-- What people did with a signal (written by the dashboard through signals.change_state()); area_signals
-- joins it to the signals of the build by signal_key.
select
    signal_key,
    area_code,
    indicator,
    method,
    first_week_start,
    state,
    acknowledged_by,
    acknowledged_at,
    acknowledged_note,
    closed_by,
    closed_at,
    close_reason,
    close_note,
    closed_through
from {{ source('signals', 'signal_states') }}
