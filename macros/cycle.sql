{#- The cycle a build belongs to. Every model reads the run date through these macros so a
    malformed var fails at compile time with its name, instead of as a cast error in one model. -#}
{% macro run_date() -%}
    {%- set raw = var('run_date') | string | trim -%}
    {%- if not modules.re.match('^[0-9]{4}-[0-9]{2}-[0-9]{2}$', raw) -%}
        {{ exceptions.raise_compiler_error(
            "var run_date must be a date written YYYY-MM-DD, got '" ~ raw ~ "'"
        ) }}
    {%- endif -%}
    {{ return(raw) }}
{%- endmacro %}

{#- A date literal of the cycle, for comparisons with date columns. -#}
{% macro run_date_literal() -%}
    cast('{{ run_date() }}' as date)
{%- endmacro %}

{#- The first instant the cycle does not see: D + 1 day at 00:00 UTC (cycle rule 1). -#}
{% macro cycle_end() -%}
    (cast('{{ run_date() }}' as date) + 1)::timestamp at time zone 'utc'
{%- endmacro %}
