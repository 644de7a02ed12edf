-- Read-only login roles for the dashboard and the auditors; neither can read a pseudonymous table.
-- On an external server, give them passwords out of band (ALTER ROLE ... PASSWORD).
do $$
begin
    if not exists (select 1 from pg_roles where rolname = 'ewi_dashboard') then
        create role ewi_dashboard login;
    end if;
    if not exists (select 1 from pg_roles where rolname = 'ewi_auditor') then
        create role ewi_auditor login;
    end if;
end
$$;

revoke all on schema pending, quarantine, raw, ref from public;
grant usage on schema published to ewi_dashboard, ewi_auditor;
grant usage on schema audit to ewi_auditor;
grant select on all tables in schema published to ewi_dashboard, ewi_auditor;
grant select on all tables in schema audit to ewi_auditor;
alter default privileges in schema published grant select on tables to ewi_dashboard, ewi_auditor;
alter default privileges in schema audit grant select on tables to ewi_auditor;
