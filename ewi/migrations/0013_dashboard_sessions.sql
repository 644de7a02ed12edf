-- Dashboard sessions kept on the server, and the login throttle. The signed cookie carries only a
-- random session id; the record here says whose it is and whether it still holds, so a logout or
-- an expiry ends it everywhere at once, and a copied cookie is worth nothing afterwards.
-- Neither dashboard role can read or change these tables: they go through the functions below
-- (security definer, like audit.record_access), which take the session id's SHA-256 only, so the
-- table never holds a usable id.
create schema if not exists dashboard_auth;
revoke all on schema dashboard_auth from public;

create table dashboard_auth.sessions (
    session_hash    bytea primary key,
    username        text not null,
    -- a digest of the user's password hash at login: a new password ends the older sessions
    credential      text not null,
    created_at      timestamptz not null default now(),
    last_seen_at    timestamptz not null default now(),
    revoked_at      timestamptz,
    revoked_reason  text check (revoked_reason in ('logout', 'expired', 'user_changed'))
);
create index sessions_created_at_idx on dashboard_auth.sessions (created_at);

-- Failed logins by scope ('user': a known username; 'address': the client's address, an IPv6
-- client's /64). A key is forgotten after a quiet day or, for a user, at a successful login.
create table dashboard_auth.login_throttle (
    scope            text not null check (scope in ('user', 'address')),
    key              text not null,
    failures         integer not null,
    last_failure_at  timestamptz not null,
    locked_until     timestamptz,
    primary key (scope, key)
);

create function dashboard_auth.start_session(p_session_hash bytea, p_username text, p_credential text)
returns void
language sql
security definer
set search_path = pg_catalog, pg_temp
as $$
    -- records a week past any use are dropped here: logins are rare enough to carry the upkeep
    delete from dashboard_auth.sessions where created_at < now() - interval '7 days';
    insert into dashboard_auth.sessions (session_hash, username, credential)
    values (p_session_hash, p_username, p_credential);
$$;

-- The session's user and credential digest when it is neither revoked, idle longer than
-- p_idle_seconds, nor older than p_absolute_seconds (and then its last use is now); no row otherwise.
create function dashboard_auth.use_session(p_session_hash bytea, p_idle_seconds integer,
                                           p_absolute_seconds integer)
returns table (username text, credential text)
language sql
security definer
set search_path = pg_catalog, pg_temp
as $$
    update dashboard_auth.sessions s set last_seen_at = now()
    where s.session_hash = p_session_hash and s.revoked_at is null
      and s.created_at > now() - make_interval(secs => p_absolute_seconds)
      and s.last_seen_at > now() - make_interval(secs => p_idle_seconds)
    returning s.username, s.credential;
$$;

create function dashboard_auth.end_session(p_session_hash bytea, p_reason text)
returns void
language sql
security definer
set search_path = pg_catalog, pg_temp
as $$
    update dashboard_auth.sessions set revoked_at = now(), revoked_reason = p_reason
    where session_hash = p_session_hash and revoked_at is null;
$$;

-- Seconds until the given keys may try again (0: now). A null key is not looked up.
create function dashboard_auth.login_wait(p_user text, p_address text)
returns integer
language sql
security definer
set search_path = pg_catalog, pg_temp
as $$
    select coalesce(ceil(extract(epoch from max(locked_until) - now()))::integer, 0)
    from dashboard_auth.login_throttle
    where locked_until > now()
      and ((scope = 'user' and key = p_user) or (scope = 'address' and key = p_address));
$$;

-- Counts one failure for a key. From the p_free-th failure in a row on, the key is locked for
-- p_base_seconds, doubled at each further failure, at most p_max_seconds. Returns the seconds of
-- the lockout this failure started (0: none).
create function dashboard_auth.login_failed(p_scope text, p_key text, p_free integer,
                                            p_base_seconds integer, p_max_seconds integer)
returns integer
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    n integer;
    lock_seconds integer := 0;
begin
    insert into dashboard_auth.login_throttle as t (scope, key, failures, last_failure_at)
    values (p_scope, p_key, 1, now())
    on conflict (scope, key) do update
        set failures = case when t.last_failure_at < now() - interval '1 day' then 1 else t.failures + 1 end,
            last_failure_at = now()
    returning failures into n;
    if n >= p_free then
        lock_seconds := least(p_max_seconds::numeric, p_base_seconds * power(2::numeric, least(n - p_free, 30)));
        update dashboard_auth.login_throttle set locked_until = now() + make_interval(secs => lock_seconds)
        where scope = p_scope and key = p_key;
    end if;
    return lock_seconds;
end
$$;

create function dashboard_auth.login_succeeded(p_user text)
returns void
language sql
security definer
set search_path = pg_catalog, pg_temp
as $$
    delete from dashboard_auth.login_throttle where scope = 'user' and key = p_user;
$$;

revoke all on all functions in schema dashboard_auth from public;
grant usage on schema dashboard_auth to ewi_dashboard;
grant execute on all functions in schema dashboard_auth to ewi_dashboard;
