-- Who saw which figures on the dashboard: every page view that shows area figures and every export,
-- with the area (null: every area), the indicator (null: every indicator) and the weeks shown.
-- Plain and append-only: a serial id and a time, no updates, so the audit chain covers it as it is.
-- The dashboard's login roles append through audit.record_dashboard_access() only; auditors read it.
create table audit.dashboard_access (
    id          bigint generated always as identity primary key,
    at          timestamptz not null default now(),
    username    text not null,
    user_role   text,
    action      text not null check (action in ('view', 'export')),
    view        text not null,          -- overview, area, provenance, methods, chart, briefing, access_log
    format      text not null,          -- html, csv, png, pdf
    area_code   text,
    indicator   text,
    week_from   date,
    week_to     date,
    path        text
);
create index dashboard_access_at_idx on audit.dashboard_access (at);
create index dashboard_access_user_idx on audit.dashboard_access (username, at);

create function audit.record_dashboard_access(
    p_username text, p_user_role text, p_action text, p_view text, p_format text, p_area_code text,
    p_indicator text, p_week_from date, p_week_to date, p_path text
) returns void
language sql
security definer
set search_path = pg_catalog, pg_temp
as $$
    insert into audit.dashboard_access (username, user_role, action, view, format, area_code, indicator,
                                        week_from, week_to, path)
    values (p_username, p_user_role, p_action, p_view, p_format, p_area_code, p_indicator, p_week_from,
            p_week_to, p_path);
$$;

revoke all on function audit.record_dashboard_access(text, text, text, text, text, text, text, date, date, text)
    from public;
grant execute on function audit.record_dashboard_access(text, text, text, text, text, text, text, date, date, text)
    to ewi_dashboard, ewi_auditor;
grant select on audit.dashboard_access to ewi_auditor;
