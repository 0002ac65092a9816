{#- Pre-hook of the per-cycle history models: removes the rows the cycle being run booked
    earlier, inside the model's transaction, before the append. A rerun of cycle D therefore
    replaces all of D's rows, even when it books fewer rows than before (a delete+insert keyed
    on the new rows would leave the vanished ones behind), and never touches another cycle. -#}
{% macro ledger_delete_cycle(cycle_column) -%}
    {%- if is_incremental() -%}
        delete from {{ this }} where {{ cycle_column }} = {{ run_date_literal() }}
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}
