-- pending.<source> becomes partitioned by batch: each delivery is copied into its own partition,
-- with no index to maintain, and leaves by a DROP instead of a million-row DELETE. Rows pending
-- before this migration stay in a default partition.
do $$
declare
    src text;
begin
    foreach src in array array['school_absence', 'referrals', 'contacts'] loop
        execute format('alter table pending.%I rename to %I', src, src || '_legacy');
        execute format('create table pending.%I (like pending.%I including defaults) partition by list (batch_id)',
                       src, src || '_legacy');
        execute format('alter table pending.%I attach partition pending.%I default', src, src || '_legacy');
    end loop;
end
$$;
