-- raw.school_absence becomes a table partitioned by ISO week, one partition per published batch.
-- Publishing a week then builds the new partition's primary key in one pass and swaps it in, and a
-- correction detaches the old week's partition: a million-row week no longer pays for a million
-- random b-tree inserts and deletes (measured: 16 s as inserts, 7 s as a built partition).
-- Rows published before this migration keep their place in the default partition.
alter table raw.school_absence rename to school_absence_legacy;
alter table raw.school_absence_legacy drop constraint school_absence_pkey;
alter index if exists raw.school_absence_published_at_idx rename to school_absence_legacy_published_at_idx;

create table raw.school_absence (like raw.school_absence_legacy including defaults including constraints)
    partition by list (iso_week);
alter table raw.school_absence add primary key (iso_week, person_pseudonym, school_unit_code);
create index school_absence_published_at_idx on raw.school_absence (published_at);
create index school_absence_batch_idx on raw.school_absence (batch_id);

alter table raw.school_absence attach partition raw.school_absence_legacy default;
