{#- Fails with every row where the column exceeds the other column of the same row, e.g.
    invalid clicks above total clicks. Nulls are left to not_null. -#}
{% test at_most(model, column_name, other_column) %}
    {%- if other_column is none or other_column | trim == '' -%}
        {{ exceptions.raise_compiler_error(
            "at_most on " ~ model ~ "." ~ column_name ~ ": argument other_column is required"
        ) }}
    {%- endif %}
    select *
    from {{ model }}
    where {{ column_name }} > {{ other_column }}
{% endtest %}
