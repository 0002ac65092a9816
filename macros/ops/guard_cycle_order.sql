{#- Refuses, before any node runs, a `dbt build` or `dbt run` of a cycle older than the newest
    booked one: rebuilding click_rollups for an old cycle would let the ledger book against a
    past state. var allow_replay true lifts the refusal (replay rules: docs/ledger.md).
    Runs on-run-start so nothing is touched when it refuses; a first run (no ledger yet) passes. -#}
{% macro guard_cycle_order() %}
    {%- if execute and flags.WHICH in ['build', 'run'] and not ledger_allow_replay() -%}
        {%- set newest = ledger_newest_booked_cycle() -%}
        {%- if newest is not none and run_date() < newest -%}
            {{ exceptions.raise_compiler_error(
                "cycle order: run_date " ~ run_date() ~ " is older than the newest booked cycle "
                ~ newest ~ " of the ledger click_adjustments. Rerun " ~ newest
                ~ " or a later day, or replay deliberately with --vars "
                ~ "'{run_date: " ~ run_date() ~ ", allow_replay: true}' and then rerun every "
                ~ "later cycle in order (docs/ledger.md, Replay)"
            ) }}
        {%- endif -%}
    {%- endif -%}
    select 1
{% endmacro %}

{#- var allow_replay as a boolean, whether it came from YAML (true) or a shell string ('true'). -#}
{% macro ledger_allow_replay() -%}
    {{ return(var('allow_replay', false) | string | lower | trim in ['true', '1', 'yes']) }}
{%- endmacro %}
