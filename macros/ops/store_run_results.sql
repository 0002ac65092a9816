{% macro store_run_results(results) %}select 1{% endmacro %}
