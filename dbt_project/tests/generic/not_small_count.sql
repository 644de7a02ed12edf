{#- Disclosure control: no published count lies between 1 and the minimum count minus one. -#}
{% test not_small_count(model, column_name) %}
select {{ column_name }}
from {{ model }}
where {{ column_name }} between 1 and {{ var('disclosure_min_count') - 1 }}
{% endtest %}
