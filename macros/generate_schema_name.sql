{#- Custom schemas are used as given (staging, intermediate, marts, policy) rather than prefixed
    with the target schema, so analysts and the export read stable names in every environment. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
