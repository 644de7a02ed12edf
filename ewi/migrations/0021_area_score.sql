-- The area score (issue 18), written by the Python task ewi.alerts.run_area_score right after the
-- Farrington task (from its results) and read by dbt as source('alerts', 'area_score_results') into
-- the published mart area_alerts (indicator 'area_score'), which applies disclosure control. Not
-- published as is: the schema alerts is the owner's only (0008_alerts.sql).
create table if not exists alerts.area_score_results (
    area_code     text not null,
    week_start    date not null,
    method        text not null,              -- stouffer or fisher_kost (dbt var area_score.method)
    components    integer not null,           -- indicators with evidence this week
    rising        integer not null,           -- of them, how many with p <= area_score.rising_p
    combined_p    double precision,           -- the combined one-sided p-value (NULL without a score)
    statistic     double precision,           -- Stouffer's Z or Fisher's X
    score         double precision,           -- ln(combined_p) / ln(alpha): > 1 = past the threshold
    is_alert      boolean not null,
    status        text not null check (status in ('ok', 'no_data', 'insufficient_history')),
    computed_at   timestamptz not null default now(),
    primary key (area_code, week_start)
);
