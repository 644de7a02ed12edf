-- Farrington-flexible results, written by the Python task ewi.alerts.run_farrington after the
-- indicator models are built, and read by dbt as source('alerts', 'farrington_results') into the
-- published mart area_alerts (which applies disclosure control). The counts here are unsuppressed,
-- so, like the intermediate schema, nobody but the owner reads this schema.
create schema if not exists alerts;
revoke all on schema alerts from public;

create table if not exists alerts.farrington_results (
    area_code         text not null,
    indicator         text not null,
    week_start        date not null,
    observed          double precision,          -- the watched count (NULL = no data that week)
    expected          double precision,          -- baseline mean (response scale)
    upper_threshold   double precision,          -- alert when observed > upper_threshold
    score             double precision,          -- R's score: > 1 means above the threshold
    p_value           double precision,          -- P(count >= observed) under the baseline
    phi               double precision,          -- quasi-Poisson dispersion (>= 1)
    is_alert          boolean not null,
    status            text not null
        check (status in ('ok', 'few_cases', 'no_data', 'insufficient_history', 'no_convergence')),
    years_used        integer not null,          -- years of history the model had
    years_configured  integer not null,          -- b asked for (dbt var farrington.b)
    trend             boolean not null,          -- a time trend was kept in the model
    reweighted        integer not null,          -- reference weeks down-weighted as past outbreaks
    parameters_sha    text not null,             -- which parameter set produced the row
    computed_at       timestamptz not null default now(),
    primary key (area_code, indicator, week_start)
);
