{#-
  Disclosure control for one count column of `relation` (a CTE or relation name).

  Adds <count_column>_is_suppressed:
  - primary: the count is between 1 and disclosure_min_count - 1 (a zero is published: it says
    nobody, which identifies no one);
  - secondary (when partition_by is given, e.g. week and indicator across areas): if the suppressed
    cells of a group are a single cell, or sum to less than the minimum, the group's total (published
    separately) minus the published cells would reveal them, so the smallest cell >= the minimum is
    suppressed too (ties broken by tiebreak). The suppressed cells then sum to at least the minimum
    twice over and no single one can be derived.
  The caller sets the value and every rate derived from it to NULL where the flag is true.
-#}
{% macro with_suppression(relation, count_column, partition_by=none, tiebreak='area_code') -%}
    {%- set m = var('disclosure_min_count') -%}
    {%- set c = count_column -%}
    {%- set is_small = c ~ ' between 1 and ' ~ (m - 1) -%}
    {%- if partition_by %}
    {%- set over = 'over (partition by ' ~ (partition_by | join(', ')) ~ ')' -%}
    select
        g.*,
        g.{{ is_small }} or (
            g._rank_{{ c }} = 1
            and g.{{ c }} >= {{ m }}
            and g._n_small_{{ c }} >= 1
            and (g._n_small_{{ c }} = 1 or g._sum_small_{{ c }} < {{ m }})
        ) as {{ c }}_is_suppressed
    from (
        select
            s.*,
            count(*) filter (where s.{{ is_small }}) {{ over }} as _n_small_{{ c }},
            coalesce(sum(s.{{ c }}) filter (where s.{{ is_small }}) {{ over }}, 0) as _sum_small_{{ c }},
            row_number() over (
                partition by {{ partition_by | join(', ') }}
                order by (s.{{ c }} >= {{ m }}) desc, s.{{ c }}, s.{{ tiebreak }}
            ) as _rank_{{ c }}
        from {{ relation }} as s
    ) as g
    {%- else %}
    select s.*, coalesce(s.{{ is_small }}, false) as {{ c }}_is_suppressed
    from {{ relation }} as s
    {%- endif %}
{%- endmacro %}


{#- The published rate: NULL when a count behind it is suppressed or there is no denominator. -#}
{% macro published_rate(numerator, denominator, is_suppressed, is_share) -%}
    case
        when {{ is_suppressed }} or {{ denominator }} is null or {{ denominator }} = 0 then null
        else round((case when {{ is_share }} then 100.0 else 1000.0 end) * {{ numerator }} / {{ denominator }}, 2)
    end::numeric(8, 2)
{%- endmacro %}


{# The published count columns after with_suppression on numerator and denominator: suppressed
   counts and the rates derived from them become NULL, and is_suppressed says so. One definition
   for every mart that publishes counts. #}
{% macro published_counts() -%}
    (case when numerator_is_suppressed then null else numerator end)::integer as numerator,
    (case when denominator_is_suppressed then null else denominator end)::integer as denominator,
    {{ published_rate('numerator', 'denominator', 'numerator_is_suppressed or denominator_is_suppressed', 'is_share') }}
        as rate,
    (case when is_share then 'percent' else 'per_1000' end)::text as rate_unit,
    (numerator_is_suppressed or denominator_is_suppressed)::boolean as is_suppressed,
    note::text as note
{%- endmacro %}
