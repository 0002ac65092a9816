{#- Fails with one row per duplicated key: the key values and how often they occur.
    Nulls compare equal here (group by), so a key with a null part is still checked. -#}
{% test unique_combination_of_columns(model, combination_of_columns) %}
    {%- if combination_of_columns is string or combination_of_columns | length == 0 -%}
        {{ exceptions.raise_compiler_error(
            "unique_combination_of_columns on " ~ model ~ ": combination_of_columns must be a "
            ~ "non-empty list of column names, got " ~ combination_of_columns
        ) }}
    {%- endif %}
    select
        {{ combination_of_columns | join(',\n        ') }},
        count(*) as occurrences
    from {{ model }}
    group by {{ combination_of_columns | join(', ') }}
    having count(*) > 1
{% endtest %}
