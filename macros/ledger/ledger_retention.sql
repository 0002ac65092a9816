{#- How long AE keeps data (three months), in days. A rental-day older than this can no longer
    be re-read from AE, so whatever is still open about it must be settled before. -#}
{% macro ae_retention_days() -%}
    {{ return(92) }}
{%- endmacro %}

{#- The age, in days, from which the retention guard warns about an open rental-day. -#}
{% macro retention_warn_days() -%}
    {%- set raw = var('retention_warn_days', 80) | string | trim -%}
    {%- if not raw.isdigit() -%}
        {{ exceptions.raise_compiler_error(
            "var retention_warn_days must be a whole number of days, got '" ~ raw ~ "'"
        ) }}
    {%- endif -%}
    {{ return(raw | int) }}
{%- endmacro %}
