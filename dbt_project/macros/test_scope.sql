{#-
  Which rows a data test reads. Besides a plain SQL `where`, a test's config may name one of these
  scopes; each checks, in an incremental build, only what the build can have changed, and on
  --full-refresh (or the first build) every row:

    rows_written_by_this_build        the rows an incremental per-person model wrote in this run
                                      (its newest processed_at; the weeks it did not rewrite were
                                      tested by the build that wrote them, and every key holds the week)
    school_weeks_published_since_last_build
                                      every row of school weeks from the earliest one the gate published
                                      since the last successful build started (a failed build does not
                                      move the mark). The gate publishes a school delivery as one ISO
                                      week's partition of raw.school_absence in the transaction that
                                      records its decision, so these weeks come from audit.batches, and
                                      the filter on iso_week (the partition key) leaves the other weeks'
                                      partitions unread: raw.school_absence has no index on published_at.
                                      Every row of a touched week is tested, so keys that hold the week
                                      compare old and new rows.
-#}
{% macro postgres__get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- if where in ('rows_written_by_this_build', 'school_weeks_published_since_last_build')
          and flags.FULL_REFRESH -%}
        {%- set where = '' -%}
    {%- elif where == 'rows_written_by_this_build' -%}
        {%- set where = 'processed_at = (select max(processed_at) from ' ~ relation ~ ')' -%}
    {%- elif where == 'school_weeks_published_since_last_build' -%}
        {%- set batches = api.Relation.create(database=target.database, schema='audit', identifier='batches') -%}
        {#- `or iso_week is null`: such a row would not be in any week, and not_null(iso_week) must see
            it; it could only sit in the default partition, which stays the only other one read -#}
        {%- set where -%}
            (iso_week >= (
                select min(b.period) from {{ batches }} as b
                where b.source = 'school_absence' and b.status = 'published'
                  and b.decided_at > coalesce((select max(r.started_at) from audit.dbt_runs as r where r.success),
                                              '-infinity'::timestamptz))
             or iso_week is null)
        {%- endset -%}
    {%- endif -%}
    {%- if where -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ where }}) dbt_subquery
        {%- endset -%}
        {%- do return(filtered) -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}
