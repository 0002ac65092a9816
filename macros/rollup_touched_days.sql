{#- The days the click_rollups build of this cycle reprocessed, for tests that check them: the
    lookback window and every day holding a row this cycle built (that includes the days named
    by new invalidations, and every day on a first build). -#}
{% macro rollup_touched_days() -%}
    select
        generate_series(
            {{ lookback_start_date() }}, {{ run_date_literal() }}, interval '1 day'
        )::date as click_date
    union
    select click_date
    from {{ ref('click_rollups') }}
    where built_cycle = {{ run_date_literal() }}
{%- endmacro %}
