-- Signals: what a coordinator acts on, instead of one row per alert. The default method's alerts of
-- one area and indicator form one signal while no more than `signal_gap_weeks` weeks without an alert
-- separate them; a longer quiet spell ends it. A signal that a person closed ends at the last alert
-- week they saw (signals.signal_states.closed_through): the next alert opens a new signal, even within
-- the gap. The key names the method, area, indicator and first alert week, so it stays the same from
-- build to build and the states people set (read here, never written) follow their signal.
-- Disclosure: no count is published here, not even of weeks. The peak score and the explanation are
-- taken from the published rows of area_alerts (a withheld score stays withheld), the weeks from its
-- published alert flags; ewi/disclosure checks them against those rows.
{%- set gap = var('signal_gap_weeks', 2) | int %}
with alerts as (
    select area_code, area_name, indicator, method, week_start, iso_week, score, explanation_sv, explanation_en
    from {{ ref('area_alerts') }}
    where is_default_method and is_alert
),

states as (
    select * from {{ ref('stg_signal_states') }}
),

gaps as (
    select
        *,
        week_start - lag(week_start) over (partition by area_code, indicator, method order by week_start) as days_since
    from alerts
),

runs as (
    -- a run: alerts no more than `gap` quiet weeks apart
    select
        *,
        sum(case when days_since is null or days_since > 7 * ({{ gap }} + 1) then 1 else 0 end) over (
            partition by area_code, indicator, method order by week_start rows unbounded preceding
        ) as run_no
    from gaps
),

run_bounds as (
    select area_code, indicator, method, run_no, min(week_start) as run_start, max(week_start) as run_end
    from runs
    group by area_code, indicator, method, run_no
),

reopened as (
    -- the first alert after a signal of the run was closed opens a new signal
    select r.area_code, r.indicator, r.method, r.run_no, min(a.week_start) as start_week
    from run_bounds as r
    inner join states as s
        on s.area_code = r.area_code and s.indicator = r.indicator and s.method = r.method
        and s.state = 'closed' and s.first_week_start between r.run_start and r.run_end
    inner join runs as a
        on a.area_code = r.area_code and a.indicator = r.indicator and a.method = r.method
        and a.run_no = r.run_no and a.week_start > s.closed_through
    group by r.area_code, r.indicator, r.method, r.run_no, s.signal_key
),

starts as (
    select area_code, indicator, method, run_start as start_week from run_bounds
    union
    select area_code, indicator, method, start_week from reopened
),

segmented as (
    select
        a.*,
        sum(case when s.start_week is null then 0 else 1 end) over (
            partition by a.area_code, a.indicator, a.method order by a.week_start rows unbounded preceding
        ) as signal_no
    from runs as a
    left join starts as s
        on s.area_code = a.area_code and s.indicator = a.indicator and s.method = a.method
        and s.start_week = a.week_start
),

signals as (
    select
        area_code,
        min(area_name) as area_name,
        indicator,
        method,
        min(week_start) as first_week_start,
        max(week_start) as last_alert_week_start,
        (array_agg(iso_week order by week_start))[1] as first_week,
        (array_agg(iso_week order by week_start desc))[1] as last_alert_week,
        max(score) as peak_score,
        (array_agg(iso_week order by score desc nulls last, week_start asc))[1] as peak_week,
        (array_agg(explanation_sv order by week_start desc))[1] as latest_sv,
        (array_agg(explanation_en order by week_start desc))[1] as latest_en
    from segmented
    group by area_code, indicator, method, signal_no
)

select
    (g.method || ':' || g.area_code || ':' || g.indicator || ':' || g.first_week)::text as signal_key,
    g.area_code::text as area_code,
    g.area_name::text as area_name,
    g.indicator::text as indicator,
    g.method::text as method,
    g.first_week::text as first_week,
    g.last_alert_week::text as last_alert_week,
    g.first_week_start::date as first_week_start,
    g.last_alert_week_start::date as last_alert_week_start,
    g.peak_score::numeric(10, 2) as peak_score,
    (case when g.peak_score is null then null else g.peak_week end)::text as peak_week,
    (case when g.first_week = g.last_alert_week then format('Larm vecka %s. %s', g.first_week, g.latest_sv)
          else format('Larm från vecka %s till %s. Senaste larmveckan: %s', g.first_week, g.last_alert_week,
                      g.latest_sv)
     end)::text as explanation_sv,
    (case when g.first_week = g.last_alert_week then format('Alert in week %s. %s', g.first_week, g.latest_en)
          else format('Alerts from week %s to %s. Latest alert week: %s', g.first_week, g.last_alert_week,
                      g.latest_en)
     end)::text as explanation_en,
    coalesce(s.state, 'new')::text as state,
    s.acknowledged_by::text as acknowledged_by,
    s.acknowledged_at::timestamptz as acknowledged_at,
    s.acknowledged_note::text as acknowledged_note,
    s.closed_by::text as closed_by,
    s.closed_at::timestamptz as closed_at,
    s.close_reason::text as close_reason,
    s.close_note::text as close_note
from signals as g
left join states as s
    on s.signal_key = g.method || ':' || g.area_code || ':' || g.indicator || ':' || g.first_week
