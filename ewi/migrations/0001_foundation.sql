-- Schemas by trust level: pending (just written, unchecked), quarantine (failed the gate),
-- raw (published source rows, the only input dbt reads), published (marts), audit, ref.
create schema if not exists audit;
create schema if not exists ref;
create schema if not exists pending;
create schema if not exists quarantine;
create schema if not exists raw;
create schema if not exists published;

create table ref.areas (
    area_code   text primary key,
    area_name   text not null,
    area_class  text not null,
    pop_total   integer not null,
    pop_0_5     integer not null,
    pop_6_12    integer not null,
    pop_13_15   integer not null,
    pop_16_17   integer not null,
    pop_18_20   integer not null
);

create table audit.batches (
    batch_id            text primary key,
    source              text,
    period              text,
    file_name           text not null,
    file_sha256         text not null,
    file_size           bigint not null,
    delivered_at        timestamp,
    received_at         timestamptz not null default now(),
    decided_at          timestamptz,
    rows_in_file        integer,
    rows_published      integer,
    status              text not null check (status in
                          ('pending', 'published', 'quarantined', 'rejected', 'duplicate', 'superseded')),
    reason              text,
    failed_checks       jsonb not null default '[]',
    superseded_by       text references audit.batches (batch_id),
    duplicate_of        text references audit.batches (batch_id),
    validation_result_id text,
    data_docs_path      text
);
create index on audit.batches (file_sha256);
create index on audit.batches (source, period, status);

create table audit.check_results (
    batch_id          text not null references audit.batches (batch_id),
    expectation_type  text not null,
    column_name       text,
    success           boolean not null,
    observed          jsonb,
    unexpected_count  bigint,
    checked_at        timestamptz not null default now()
);
create index on audit.check_results (batch_id);

-- Pending and quarantine hold the file's text as delivered, so that a type error is a recorded
-- check failure instead of a COPY error; raw holds typed, checked rows.
create table pending.school_absence (
    batch_id text not null,
    person_pseudonym text, iso_week text, school_unit_code text, home_area_code text,
    birth_year text, scheduled_minutes text, valid_absence_minutes text, invalid_absence_minutes text
);
create table pending.referrals (
    batch_id text not null,
    referral_id text, person_pseudonym text, received_date text, home_area_code text,
    birth_year text, reporter_category text, concern_category text
);
create table pending.contacts (
    batch_id text not null,
    contact_id text, person_pseudonym text, contact_date text, home_area_code text,
    birth_year text, contact_type text, agency text
);
create index on pending.school_absence (batch_id);
create index on pending.referrals (batch_id);
create index on pending.contacts (batch_id);

create table quarantine.school_absence (like pending.school_absence);
create table quarantine.referrals (like pending.referrals);
create table quarantine.contacts (like pending.contacts);
create index on quarantine.school_absence (batch_id);
create index on quarantine.referrals (batch_id);
create index on quarantine.contacts (batch_id);

create table raw.school_absence (
    batch_id                text not null,
    person_pseudonym        text not null,
    iso_week                text not null,
    school_unit_code        text not null,
    home_area_code          text not null,
    birth_year              integer not null,
    scheduled_minutes       integer not null,
    valid_absence_minutes   integer not null,
    invalid_absence_minutes integer not null,
    primary key (person_pseudonym, iso_week, school_unit_code)
);
create index on raw.school_absence (batch_id);
create index on raw.school_absence (iso_week);

create table raw.referrals (
    batch_id          text not null,
    referral_id       text primary key,
    person_pseudonym  text not null,
    received_date     date not null,
    home_area_code    text not null,
    birth_year        integer not null,
    reporter_category text not null,
    concern_category  text not null
);
create index on raw.referrals (batch_id);
create index on raw.referrals (received_date);

create table raw.contacts (
    batch_id          text not null,
    contact_id        text primary key,
    person_pseudonym  text not null,
    contact_date      date not null,
    home_area_code    text not null,
    birth_year        integer not null,
    contact_type      text not null,
    agency            text not null
);
create index on raw.contacts (batch_id);
create index on raw.contacts (contact_date);
