{#- The one place that decides how far back a cycle re-reads click data (cycle rule 2).
    A cycle D reprocesses the days D - lookback_days + 1 .. D; lookback_days comes from the
    project var so an operator can widen it for one backfill run without editing a model. -#}
{% macro lookback_days() -%}
    {%- set raw = var('lookback_days') | string | trim -%}
    {%- if not raw.isdigit() or raw | int < 1 -%}
        {{ exceptions.raise_compiler_error(
            "var lookback_days must be a whole number of days, 1 or more, got '" ~ raw ~ "'"
        ) }}
    {%- endif -%}
    {{ return(raw | int) }}
{%- endmacro %}

{#- The first day inside the lookback of the cycle, as a date expression. -#}
{% macro lookback_start_date() -%}
    (cast('{{ run_date() }}' as date) - {{ lookback_days() - 1 }})
{%- endmacro %}
