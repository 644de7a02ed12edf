-- A tamper-evident audit trail (issue 17). One chain, audit.chain, holds a link for every version of
-- every row of every table in schema audit: the row's digest (sha256 of its canonical JSON), the
-- operation, and a hash over the link and the previous link's hash, keyed with a secret that lives
-- outside the database (EWI_AUDIT_CHAIN_KEY or $EWI_HOME/audit/chain.key; EWI's processes pass it in
-- the session setting ewi.chain_key). Audit rows are legitimately updated (a batch goes from pending
-- to published), so the chain records versions rather than forbidding change; what it cannot
-- record is a change made without EWI's key (plain SQL from another client: its link does not
-- verify), with the triggers disabled, or by rewriting the links (the hashes no longer join).
-- `ewi audit verify` (ewi/audit_chain.py) checks both the links and that the rows in the tables are
-- exactly the versions the chain says are live. docs/decisions.md, "Issue 17: backup and audit trail".

create table if not exists audit.chain (
    seq          bigint primary key,
    table_name   text not null,
    op           text not null check (op in ('genesis', 'insert', 'update', 'delete')),
    row_key      text,           -- the row's primary key (or batch id) in words, to name it
    row_digest   text,           -- the row after the change (genesis, insert, update)
    old_digest   text,           -- the row before it (update, delete)
    recorded_at  timestamptz not null,
    prev_hash    text not null,
    hash         text not null
);
create index if not exists chain_table_idx on audit.chain (table_name);

-- What each `ewi audit verify` found; shown on the auditor's page. Chained like every audit table.
create table if not exists audit.chain_verifications (
    id               bigint generated always as identity primary key,
    verified_at      timestamptz not null default now(),
    holds            boolean not null,
    records_checked  bigint not null,
    links_checked    bigint not null,
    head_seq         bigint,
    head_hash        text,
    first_broken     text,       -- the first broken record, in words (never row content)
    problems         integer not null default 0
);
grant select on audit.chain, audit.chain_verifications to ewi_auditor;

-- The digest of one row: sha256 over its JSON without null members (adding a nullable column to an
-- audit table leaves earlier digests valid). Callers run with TimeZone UTC and IntervalStyle
-- postgres, so the JSON of a timestamp is the same whoever computes it.
create or replace function audit.record_digest(r anyelement) returns text
language sql stable
as $$ select encode(sha256(convert_to(jsonb_strip_nulls(to_jsonb(r))::text, 'UTF8')), 'hex') $$;

-- A link's hash: sha256(key || sha256(key || link)), a keyed hash built from the one digest the
-- server has without extensions (pgcrypto is not on every server).
create or replace function audit.link_hash(
    p_key text, p_prev text, p_seq bigint, p_table text, p_op text, p_row_key text,
    p_row_digest text, p_old_digest text, p_at timestamptz
) returns text
language sql immutable
as $$
    select encode(sha256(convert_to(coalesce(p_key, ''), 'UTF8') || sha256(convert_to(
        concat_ws('|', coalesce(p_key, ''), p_prev, p_seq::text, p_table, p_op, coalesce(p_row_key, ''),
                  coalesce(p_row_digest, ''), coalesce(p_old_digest, ''),
                  extract(epoch from p_at)::text), 'UTF8'))), 'hex')
$$;

-- The row's name in a report: the values of the key columns the trigger was given.
create or replace function audit.record_key(j jsonb, cols text[]) returns text
language sql immutable
as $$
    select string_agg(c || '=' || coalesce(j ->> c, ''), ', ' order by o)
    from unnest(cols) with ordinality as u(c, o)
$$;

-- Appends one link, at the commit of the transaction that changed the row (the trigger is deferred).
-- The advisory lock orders writers: two ingests at once append one after the other (the second
-- waits until the first has committed), so every link's prev_hash is its predecessor's.
create or replace function audit.chain_record() returns trigger
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
set timezone = 'UTC'
set intervalstyle = 'postgres'
as $$
declare
    tbl text := tg_table_schema || '.' || tg_table_name;
    new_d text;
    old_d text;
    k text;
    last record;
    s bigint;
    prev text;
    at timestamptz := clock_timestamp();
    key text := current_setting('ewi.chain_key', true);
begin
    if tg_op in ('INSERT', 'UPDATE') then new_d := audit.record_digest(new); end if;
    if tg_op in ('UPDATE', 'DELETE') then old_d := audit.record_digest(old); end if;
    if tg_op = 'UPDATE' and new_d = old_d then
        return null;
    end if;
    k := audit.record_key(case when tg_op = 'DELETE' then to_jsonb(old) else to_jsonb(new) end, tg_argv);
    perform pg_advisory_xact_lock(14745625);  -- 0x0E1_0019: the audit chain (ewi/locks.py AUDIT_CHAIN)
    select c.seq, c.hash into last from audit.chain as c order by c.seq desc limit 1;
    s := coalesce(last.seq, 0) + 1;
    prev := coalesce(last.hash, repeat('0', 64));
    insert into audit.chain (seq, table_name, op, row_key, row_digest, old_digest, recorded_at, prev_hash, hash)
    values (s, tbl, lower(tg_op), k, new_d, old_d, at, prev,
            audit.link_hash(key, prev, s, tbl, lower(tg_op), k, new_d, old_d, at));
    return null;
end
$$;
revoke all on function audit.chain_record() from public;

-- Chains one table: the trigger, and a genesis link for each row it already holds. Idempotent.
-- Called for every table of schema audit by this migration and by `ewi warehouse init` after the
-- migrations, so a table another migration adds to schema audit is chained without its author
-- having to remember (tests/test_audit_chain.py fails for a table that is not).
create or replace function audit.chain_table(p_table regclass) returns bigint
language plpgsql
set search_path = pg_catalog, pg_temp
set timezone = 'UTC'
set intervalstyle = 'postgres'
as $$
declare
    cols text[];
    tbl text;
    n bigint := 0;
    r record;
    s bigint;
    prev text;
    k text;
    d text;
    at timestamptz := clock_timestamp();
    key text := current_setting('ewi.chain_key', true);
begin
    select n.nspname || '.' || c.relname into tbl
    from pg_class as c join pg_namespace as n on n.oid = c.relnamespace where c.oid = p_table;
    if tbl = 'audit.chain' then
        return 0;
    end if;
    if exists (select 1 from pg_trigger where tgrelid = p_table and tgname = 'audit_chain') then
        return 0;
    end if;
    select array_agg(a.attname::text order by array_position(i.indkey::int2[], a.attnum)) into cols
    from pg_index as i join pg_attribute as a on a.attrelid = i.indrelid and a.attnum = any (i.indkey)
    where i.indrelid = p_table and i.indisprimary;
    if cols is null then
        select array_agg(a.attname::text) into cols from pg_attribute as a
        where a.attrelid = p_table and a.attname in ('batch_id', 'run_id') and not a.attisdropped;
    end if;
    cols := coalesce(cols, '{}');
    perform pg_advisory_xact_lock(14745625);
    select c.seq, c.hash into s, prev from audit.chain as c order by c.seq desc limit 1;
    s := coalesce(s, 0);
    prev := coalesce(prev, repeat('0', 64));
    for r in execute format('select to_jsonb(t) as j, audit.record_digest(t) as d from %s as t', p_table) loop
        s := s + 1;
        n := n + 1;
        k := audit.record_key(r.j, cols);
        insert into audit.chain (seq, table_name, op, row_key, row_digest, old_digest, recorded_at, prev_hash, hash)
        values (s, tbl, 'genesis', k, r.d, null, at, prev,
                audit.link_hash(key, prev, s, tbl, 'genesis', k, r.d, null, at))
        returning hash into prev;
    end loop;
    -- Deferred to the commit: a transaction's links are appended as it commits, so the chain's lock
    -- is held only for the commit, never while an ingest or a build goes on with its work, and it
    -- is the last lock a transaction takes (no deadlock with the pipeline's own locks).
    execute format('create constraint trigger audit_chain after insert or update or delete on %s '
                   'deferrable initially deferred for each row execute function audit.chain_record(%s)',
                   p_table, (select coalesce(string_agg(quote_literal(c), ', '), '') from unnest(cols) as c));
    return n;
end
$$;
revoke all on function audit.chain_table(regclass) from public;

-- Every table of schema audit not chained yet; returns how many rows got genesis links.
create or replace function audit.chain_all() returns bigint
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
    t regclass;
    n bigint := 0;
begin
    for t in select c.oid::regclass from pg_class as c join pg_namespace as ns on ns.oid = c.relnamespace
             where ns.nspname = 'audit' and c.relkind in ('r', 'p') and c.relname <> 'chain'
               and not c.relispartition
             order by c.relname loop
        n := n + audit.chain_table(t);
    end loop;
    return n;
end
$$;
revoke all on function audit.chain_all() from public;

select audit.chain_all();
