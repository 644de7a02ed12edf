-- Who logged in to the dashboard and what they exported. The dashboard's login roles may append
-- through audit.record_access() only: they can neither read nor change earlier entries.
create table if not exists audit.access_log (
    id          bigint generated always as identity primary key,
    at          timestamptz not null default now(),
    username    text not null,
    user_role   text,
    action      text not null,
    success     boolean not null default true,
    path        text,
    detail      jsonb not null default '{}'
);
create index if not exists access_log_at_idx on audit.access_log (at);

create or replace function audit.record_access(
    p_username text, p_user_role text, p_action text, p_success boolean, p_path text, p_detail jsonb
) returns void
language sql
security definer
set search_path = pg_catalog, pg_temp
as $$
    insert into audit.access_log (username, user_role, action, success, path, detail)
    values (p_username, p_user_role, p_action, p_success, p_path, coalesce(p_detail, '{}'::jsonb));
$$;

revoke all on function audit.record_access(text, text, text, boolean, text, jsonb) from public;
grant usage on schema audit to ewi_dashboard;
grant execute on function audit.record_access(text, text, text, boolean, text, jsonb)
    to ewi_dashboard, ewi_auditor;
