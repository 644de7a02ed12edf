-- The school-absence key is guaranteed without an index: the gate's uniqueness rule passes only a
-- batch whose key is unique, a published week's partition holds that one batch (the audited pending
-- table itself, attached), its CHECK admits only its own ISO week, and a correction replaces the
-- whole partition in one transaction. The per-partition unique indexes of 0010 are dropped: each
-- cost a 1.6-2 s build per million-row week and about 100 MB that no query reads (decisions.md).
do $$
declare
    part regclass;
begin
    for part in select inhrelid::regclass from pg_inherits where inhparent = 'raw.school_absence'::regclass loop
        execute format('drop index if exists %s',
                       quote_ident(split_part(part::text, '.', 1)) || '.' ||
                       quote_ident(split_part(part::text, '.', 2) || '_key'));
    end loop;
end
$$;
