{% macro ensure_ops_tables() %}select 1{% endmacro %}
