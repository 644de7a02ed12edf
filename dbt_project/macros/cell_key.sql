{#-
  SCB's Cell Key Method (var disclosure_method: cell_key). Every person gets a record key in [0, 1)
  from their pseudonym; a cell's key is the sum of its persons' keys mod 1, so the same persons give
  the same key and the same published value in every build and table; the perturbation table
  (var cell_key_ptable, docs/decisions.md) maps (value, cell key) to the noise added.
-#}
{% macro cell_key_method() -%}
    {{ return(var('disclosure_method', 'suppression') == 'cell_key') }}
{%- endmacro %}


{% macro record_key(pseudonym) -%}
    (('x' || substr(md5('{{ var("cell_key_salt") }}' || {{ pseudonym }}), 1, 8))::bit(32)::bigint::numeric / 4294967296)
{%- endmacro %}


{#- value + noise from the table; 0 (nobody, no key) stays 0 -#}
{% macro cell_key_perturbed(value, key) -%}
    {%- set rows = var('cell_key_ptable') -%}
    {%- set top = rows | map(attribute=0) | max -%}
    ({{ value }} + coalesce(case
        {%- for v, lo, hi, noise in rows %}
        when {{ 'least(' ~ value ~ ', ' ~ top ~ ')' }} = {{ v }} and {{ key }} >= {{ lo }} and {{ key }} < {{ hi }} then {{ noise }}
        {%- endfor %}
    end, 0))::integer
{%- endmacro %}
