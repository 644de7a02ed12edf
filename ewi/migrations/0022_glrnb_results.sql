-- Results of the negative-binomial GLR detector (Höhle & Paul 2008; ewi.alerts.glrnb), written by the
-- Python task ewi.alerts.run_glrnb right after the Farrington task (its in-control means are
-- Farrington's expectations) and read by dbt as source('alerts', 'glrnb_results') into area_alerts,
-- which applies disclosure control. Unsuppressed, so only the owner reads the schema (0008).
create table if not exists alerts.glrnb_results (
    area_code         text not null,
    indicator         text not null,
    week_start        date not null,
    observed          double precision,          -- the watched count (NULL = no data that week)
    expected          double precision,          -- mu0: Farrington's expectation for the week
    alpha             double precision,          -- negative-binomial overdispersion used (0 = Poisson)
    statistic         double precision,          -- the GLR statistic (R's upperbound with ret = "value")
    c_arl             double precision not null, -- the alarm threshold on the statistic
    cases_needed      double precision,          -- the smallest count this week that would alarm
    is_alert          boolean not null,          -- statistic >= c_arl (the chart restarts the week after)
    status            text not null
        check (status in ('ok', 'few_cases', 'no_data', 'insufficient_history', 'no_convergence')),
    chart_start       date,                      -- first week of the chart this week belongs to
    parameters_sha    text not null,
    computed_at       timestamptz not null default now(),
    primary key (area_code, indicator, week_start)
);
