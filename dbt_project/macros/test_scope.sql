{#-
  Which rows a data test reads. Besides a plain SQL `where`, a test's config may name one of these
  scopes; each checks, in an incremental build, only what the build can have changed, and on
  --full-refresh (or the first build) every row:

    rows_written_by_this_build        the rows an incremental per-person model wrote in this run
                                      (its newest processed_at; the weeks it did not rewrite were
                                      tested by the build that wrote them, and every key holds the week)
    rows_published_since_last_build   rows published to raw after the last successful build started
                                      (rows are only ever added or replaced by ingest, with a new
                                      published_at; a failed build does not move the mark)
    school_weeks_published_since_last_build
                                      every row of each week that has school rows published since the
                                      last successful build (for keys that hold the week: old and new
                                      rows of a touched week are compared)
-#}
{% macro postgres__get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- set since_last_build -%}
        coalesce((select max(r.started_at) from audit.dbt_runs as r where r.success), '-infinity'::timestamptz)
    {%- endset -%}
    {%- if where in ('rows_written_by_this_build', 'rows_published_since_last_build',
                     'school_weeks_published_since_last_build') and flags.FULL_REFRESH -%}
        {%- set where = '' -%}
    {%- elif where == 'rows_written_by_this_build' -%}
        {%- set where = 'processed_at = (select max(processed_at) from ' ~ relation ~ ')' -%}
    {%- elif where == 'rows_published_since_last_build' -%}
        {%- set where = 'published_at > ' ~ since_last_build -%}
    {%- elif where == 'school_weeks_published_since_last_build' -%}
        {%- set raw = api.Relation.create(database=target.database, schema='raw', identifier='school_absence') -%}
        {%- set where -%}
            week_start >= (select min(to_date(s.iso_week, 'IYYY-"W"IW')) from {{ raw }} as s
                           where s.published_at > {{ since_last_build }})
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
