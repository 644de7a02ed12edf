-- int_area_weekly_counts became an incremental dbt model with a processed_at column (decisions.md).
-- dbt's incremental materialization stops (on_schema_change: fail) at the whole-table version an
-- older build left, so that version goes and the next build creates the model whole, as on a new
-- warehouse. It is derived from the per-person models: nothing is lost.
do $$
begin
    if to_regclass('intermediate.int_area_weekly_counts') is not null and not exists (
        select from information_schema.columns
        where table_schema = 'intermediate' and table_name = 'int_area_weekly_counts'
          and column_name = 'processed_at'
    ) then
        drop table intermediate.int_area_weekly_counts;
    end if;
end
$$;
