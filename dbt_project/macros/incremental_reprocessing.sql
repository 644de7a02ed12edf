{#-
  Incremental reprocessing of the per-person weekly models.

  Every row carries processed_at (the build that wrote it). A build recomputes every week from
      reprocess_from = least(
          the week after the newest week already built,                   -- weeks new to the model
          earliest week of any input row newer than max(processed_at),   -- new weeks and corrections
          earliest period of any delivery the gate decided on since max(processed_at)
      )                                                             -- (a correction may delete rows)
  and each model reads its inputs from reprocess_from minus its trailing window (3 weeks before for
  the 4-week absence window, 11 for the 12-week signal window), so a new week costs that week and
  its trailing window's inputs, and a corrected old week is recomputed with every later week it feeds
  (a week's row depends only on its own trailing window, so no earlier week can change).
  "The week after the newest built" also covers weeks that come into range without rows of their
  own, such as a school week that never arrived between two that did.
  The strategy `replace_from` deletes the target's weeks >= reprocess_from and inserts the new rows;
  both sides evaluate the same expression against the not yet modified target.
  Exactly once: no gate decision commits while a build runs, and a decision's decided_at (and its
  rows' published_at) is read after it waited for a running build (advisory locks, ewi/locks.py), so
  a decision is either seen by a build or newer than that build's processed_at.

  Model config (under meta):  reprocess_inputs: [[<model>, <timestamp column>], ...]  (each has week_start)
  and the model calls reprocess_from(this, <inputs>) with the same value.
-#}
{% macro reprocess_from(target_relation, inputs=none) -%}
    {#- The model passes its inputs (unit tests do not see its meta); the strategy reads meta. -#}
    {%- set inputs = inputs if inputs is not none else config.meta_get('reprocess_inputs') -%}
    {%- if inputs is none -%}
        {{ exceptions.raise_compiler_error("reprocess_from: the model sets no meta reprocess_inputs") }}
    {%- endif -%}
    (
        {#- Never a week retention cut the inputs of: before kept_from there are no per-person rows,
            and the 14 weeks after it would be counted with a truncated window (12 weeks of
            multi_signal over flags of 4 weeks of absence: ewi/retention.py LONGEST_INPUT_WEEKS). Those weeks
            keep the counts made before the cut (published aggregates are kept; docs/decisions.md). #}
        select greatest(case
            when wm.watermark is null then date '0001-01-01'
            else least(
                wm.max_week + 7,
                {%- for input in inputs %}
                {#- `+ 0`: with a bare min(week_start) PostgreSQL walks the week_start index from the oldest
                    week and filters on the timestamp, reading the whole history when few rows are new;
                    this way it reads only the new rows through the timestamp's index. #}
                (select min(i.week_start + 0) from {{ ref(input[0]) }} as i where i.{{ input[1] }} > wm.watermark),
                {%- endfor %}
                (select min(b.week_start) from {{ ref('stg_batches') }} as b
                  where b.status in ('published', 'superseded') and b.decided_at > wm.watermark)
            )
        end, (select coalesce(r.kept_from + 98, date '0001-01-01') from {{ ref('stg_retention_runs') }} as r))
        from (
            select max(processed_at) as watermark, max(week_start) as max_week
            from {{ target_relation }}
        ) as wm
    )
{%- endmacro %}


{% macro get_incremental_replace_from_sql(arg_dict) %}
    {%- set target = arg_dict["target_relation"] -%}
    {%- set columns = arg_dict["dest_columns"] | map(attribute="quoted") | join(", ") -%}
    delete from {{ target }} where week_start >= {{ reprocess_from(target) }};
    insert into {{ target }} ({{ columns }})
    select {{ columns }} from {{ arg_dict["temp_relation"] }};
{% endmacro %}
