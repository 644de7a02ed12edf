-- Signal states: what a coordinator has done with a signal (published.area_signals, built by dbt from
-- the default method's alerts). They are operational data written by people, so they live outside
-- `published`, which every build replaces: a build reads them (dbt source signals.signal_states) and
-- never writes them. The dashboard changes a state only through signals.change_state() (security
-- definer), which checks the step, records it in audit.signal_state_changes (who, when, from -> to,
-- note or reason) and updates the published row at once, so the change shows before the next build.
-- A signal with no row here is 'new'.
create schema if not exists signals;
revoke all on schema signals from public;

create table if not exists signals.signal_states (
    signal_key         text primary key,       -- published.area_signals.signal_key
    area_code          text not null,
    indicator          text not null,
    method             text not null,
    first_week_start   date not null,          -- Monday of the signal's first alert week
    state              text not null check (state in ('acknowledged', 'closed')),
    acknowledged_by    text,
    acknowledged_at    timestamptz,
    acknowledged_note  text,
    closed_by          text,
    closed_at          timestamptz,
    close_reason       text check (close_reason in ('action_started', 'monitored', 'data_issue', 'no_action')),
    close_note         text,
    -- the last alert week the person saw when closing: an alert after it opens a new signal
    closed_through     date,
    check (state <> 'closed' or (closed_by is not null and closed_at is not null
                                 and close_reason is not null and closed_through is not null)),
    check (state <> 'acknowledged' or (acknowledged_by is not null and acknowledged_at is not null))
);

-- Every change of a signal's state, for the auditors; appended by signals.change_state() only.
create table if not exists audit.signal_state_changes (
    id           bigint generated always as identity primary key,
    at           timestamptz not null default now(),
    username     text not null,
    user_role    text not null,
    signal_key   text not null,
    area_code    text not null,
    indicator    text not null,
    from_state   text not null,
    to_state     text not null,
    note         text,
    reason       text
);
create index if not exists signal_state_changes_key_idx on audit.signal_state_changes (signal_key, at);
grant select on audit.signal_state_changes to ewi_auditor;

create or replace function signals.change_state(
    p_signal_key text, p_from_state text, p_to_state text, p_username text, p_user_role text,
    p_note text, p_reason text
) returns void
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    sig record;
    current_state text;
    note text := nullif(btrim(coalesce(p_note, '')), '');
begin
    if p_user_role is distinct from 'coordinator' then
        raise exception 'only a coordinator changes the state of a signal' using errcode = 'insufficient_privilege';
    end if;
    if coalesce(btrim(p_username), '') = '' then
        raise exception 'a state change names who made it' using errcode = 'invalid_parameter_value';
    end if;
    if length(note) > 1000 then
        raise exception 'the note is longer than 1000 characters' using errcode = 'invalid_parameter_value';
    end if;
    -- one change of a signal at a time; the second sees the first's result
    perform pg_advisory_xact_lock(hashtext('ewi signal ' || p_signal_key));
    select signal_key, area_code, indicator, method, first_week_start, last_alert_week_start
      into sig from published.area_signals where signal_key = p_signal_key;
    if not found then
        raise exception 'no published signal has this key' using errcode = 'no_data_found';
    end if;
    select s.state into current_state from signals.signal_states as s where s.signal_key = p_signal_key;
    current_state := coalesce(current_state, 'new');
    if current_state is distinct from p_from_state then
        -- someone else changed it since the page was read: say so rather than overwrite
        raise exception 'the signal is % now, not %', current_state, p_from_state
            using errcode = 'serialization_failure';
    end if;
    if p_to_state = 'acknowledged' and current_state = 'new' then
        insert into signals.signal_states (signal_key, area_code, indicator, method, first_week_start, state,
                                           acknowledged_by, acknowledged_at, acknowledged_note)
        values (sig.signal_key, sig.area_code, sig.indicator, sig.method, sig.first_week_start, 'acknowledged',
                p_username, now(), note);
    elsif p_to_state = 'closed' and current_state in ('new', 'acknowledged') then
        if p_reason is null or p_reason not in ('action_started', 'monitored', 'data_issue', 'no_action') then
            raise exception 'a closed signal needs a reason: action_started, monitored, data_issue or no_action'
                using errcode = 'invalid_parameter_value';
        end if;
        insert into signals.signal_states (signal_key, area_code, indicator, method, first_week_start, state,
                                           closed_by, closed_at, close_reason, close_note, closed_through)
        values (sig.signal_key, sig.area_code, sig.indicator, sig.method, sig.first_week_start, 'closed',
                p_username, now(), p_reason, note, sig.last_alert_week_start)
        on conflict (signal_key) do update set
            state = 'closed', closed_by = excluded.closed_by, closed_at = excluded.closed_at,
            close_reason = excluded.close_reason, close_note = excluded.close_note,
            closed_through = excluded.closed_through;
    else
        raise exception 'a signal goes from new to acknowledged to closed; % to % is not a step',
            current_state, p_to_state using errcode = 'invalid_parameter_value';
    end if;
    insert into audit.signal_state_changes (username, user_role, signal_key, area_code, indicator,
                                            from_state, to_state, note, reason)
    values (p_username, p_user_role, sig.signal_key, sig.area_code, sig.indicator, current_state, p_to_state,
            note, case when p_to_state = 'closed' then p_reason end);
    perform signals.apply_states(p_signal_key);
end
$$;

-- Copy the states onto published.area_signals (one signal, or all of them when the key is NULL). A
-- build reads the states as it starts; the publish step calls this in its transaction, so a change
-- made while the build ran is not lost when the new table replaces the old.
create or replace function signals.apply_states(p_signal_key text default null) returns void
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    -- plpgsql, not sql: the table is made by the first build, after this migration
    update published.area_signals as p
    set state = s.state,
        acknowledged_by = s.acknowledged_by, acknowledged_at = s.acknowledged_at,
        acknowledged_note = s.acknowledged_note,
        closed_by = s.closed_by, closed_at = s.closed_at, close_reason = s.close_reason, close_note = s.close_note
    from signals.signal_states as s
    where s.signal_key = p.signal_key and (p_signal_key is null or p.signal_key = p_signal_key)
      and (p.state, p.acknowledged_at, p.closed_at) is distinct from (s.state, s.acknowledged_at, s.closed_at);
end
$$;

revoke all on function signals.change_state(text, text, text, text, text, text, text) from public;
revoke all on function signals.apply_states(text) from public;
grant usage on schema signals to ewi_dashboard;
-- the dashboard writes through the function only; auditors read the trail in audit, and write nothing
grant execute on function signals.change_state(text, text, text, text, text, text, text) to ewi_dashboard;
