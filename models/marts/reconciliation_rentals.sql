{#- Incremental, one append per cycle, like reconciliation_daily. Rows kept per cycle: the
    rental-days the cycle re-read (lookback), booked or found open; a rental-day closed and
    outside the lookback is not repeated every night. -#}
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='fail',
        pre_hook="{{ ledger_delete_cycle('run_date') }}",
        indexes=[
            {'columns': ['run_date', 'rental_id', 'click_date'], 'unique': true},
            {'columns': ['click_date']},
        ],
    )
}}

with attributed_hours as (

    select * from {{ ref('int_click_hours_attributed') }}

),

invalidations as (

    select * from {{ ref('int_invalidations_attributed') }}

),

rollups as (

    select * from {{ ref('click_rollups') }}
    where click_date <= {{ run_date_literal() }}

),

entries as (

    select * from {{ ref('click_adjustments') }}
    where booked_cycle <= {{ run_date_literal() }}

),

exports as (

    select * from {{ ref('stg_billing__meter_event_exports') }}
    where is_sent and booked_cycle <= {{ run_date_literal() }}

),

attributed_by_rental_day as (

    select
        rental_id,
        click_date,
        sum(clicks) as attributed_clicks
    from attributed_hours
    group by rental_id, click_date

),

invalidations_by_rental_day as (

    select
        rental_id,
        original_click_date as click_date,
        sum(invalidated_clicks) as attributed_invalidated_clicks
    from invalidations
    group by rental_id, original_click_date

),

ledger_by_rental_day as (

    select
        rental_id,
        click_date,
        max(renter_id) as renter_id,
        sum(total_clicks_delta) as ledger_total_clicks,
        sum(valid_clicks_delta) as ledger_valid_clicks,
        coalesce(
            sum(valid_clicks_delta) filter (where booked_cycle < {{ run_date_literal() }}), 0
        ) as ledger_valid_clicks_before_cycle,
        coalesce(
            sum(valid_clicks_delta) filter (where booked_cycle = {{ run_date_literal() }}), 0
        ) as cycle_valid_clicks_delta,
        bool_or(
            booked_cycle = {{ run_date_literal() }} and late_invalidated_clicks_delta <> 0
        ) as has_cycle_late_invalidation,
        bool_or(booked_cycle = {{ run_date_literal() }}) as is_booked_in_cycle,
        max(stripe_customer_id) filter (
            where booked_cycle = {{ run_date_literal() }}
        ) as cycle_stripe_customer_id
    from entries
    group by rental_id, click_date

),

exported_by_rental_day as (

    select
        rental_id,
        click_date,
        coalesce(
            sum(value) filter (where booked_cycle < {{ run_date_literal() }}), 0
        ) as exported_valid_clicks_before_cycle,
        coalesce(
            sum(value) filter (where booked_cycle = {{ run_date_literal() }}), 0
        ) as cycle_exported_valid_clicks
    from exports
    group by rental_id, click_date

),

rental_days as (

    select
        rental_id,
        click_date
    from rollups

    union

    select
        rental_id,
        click_date
    from attributed_by_rental_day

    union

    select
        rental_id,
        click_date
    from ledger_by_rental_day

    union

    select
        rental_id,
        click_date
    from exported_by_rental_day

),

joined as (

    select
        rental_days.rental_id,
        rental_days.click_date,
        ledger_by_rental_day.cycle_stripe_customer_id,
        coalesce(rollups.renter_id, ledger_by_rental_day.renter_id) as renter_id,
        coalesce(attributed_by_rental_day.attributed_clicks, 0) as attributed_clicks,
        coalesce(rollups.total_clicks, 0) as rollup_total_clicks,
        coalesce(invalidations_by_rental_day.attributed_invalidated_clicks, 0)
            as attributed_invalidated_clicks,
        coalesce(rollups.late_invalidated_clicks, 0) as rollup_late_invalidated_clicks,
        coalesce(rollups.valid_clicks, 0) as rollup_valid_clicks,
        coalesce(ledger_by_rental_day.ledger_total_clicks, 0) as ledger_total_clicks,
        coalesce(ledger_by_rental_day.ledger_valid_clicks, 0) as ledger_valid_clicks,
        coalesce(ledger_by_rental_day.ledger_valid_clicks_before_cycle, 0)
            as ledger_valid_clicks_before_cycle,
        coalesce(exported_by_rental_day.exported_valid_clicks_before_cycle, 0)
            as exported_valid_clicks_before_cycle,
        coalesce(ledger_by_rental_day.cycle_valid_clicks_delta, 0) as cycle_valid_clicks_delta,
        coalesce(exported_by_rental_day.cycle_exported_valid_clicks, 0)
            as cycle_exported_valid_clicks,
        coalesce(ledger_by_rental_day.has_cycle_late_invalidation, false)
            as has_cycle_late_invalidation,
        coalesce(ledger_by_rental_day.is_booked_in_cycle, false) as is_booked_in_cycle,
        coalesce(rollups.is_estimated, false) as is_estimated
    from rental_days
    left outer join rollups
        on
            rental_days.rental_id = rollups.rental_id
            and rental_days.click_date = rollups.click_date
    left outer join attributed_by_rental_day
        on
            rental_days.rental_id = attributed_by_rental_day.rental_id
            and rental_days.click_date = attributed_by_rental_day.click_date
    left outer join invalidations_by_rental_day
        on
            rental_days.rental_id = invalidations_by_rental_day.rental_id
            and rental_days.click_date = invalidations_by_rental_day.click_date
    left outer join ledger_by_rental_day
        on
            rental_days.rental_id = ledger_by_rental_day.rental_id
            and rental_days.click_date = ledger_by_rental_day.click_date
    left outer join exported_by_rental_day
        on
            rental_days.rental_id = exported_by_rental_day.rental_id
            and rental_days.click_date = exported_by_rental_day.click_date

),

differences as (

    select
        joined.*,
        joined.attributed_clicks - joined.rollup_total_clicks as attributed_minus_rollup,
        joined.attributed_invalidated_clicks
        - joined.rollup_late_invalidated_clicks as invalidations_minus_rollup,
        joined.rollup_total_clicks - joined.ledger_total_clicks as rollup_minus_ledger_total,
        joined.rollup_valid_clicks - joined.ledger_valid_clicks as rollup_minus_ledger_valid,
        joined.ledger_valid_clicks_before_cycle
        - joined.exported_valid_clicks_before_cycle as ledger_minus_exported_before_cycle,
        joined.cycle_valid_clicks_delta
        - joined.cycle_exported_valid_clicks as cycle_unexported_valid_clicks
    from joined

),

statused as (

    select
        differences.*,
        case
            when
                differences.attributed_minus_rollup <> 0
                or differences.invalidations_minus_rollup <> 0
                or differences.rollup_minus_ledger_total <> 0
                or differences.rollup_minus_ledger_valid <> 0
                or differences.ledger_minus_exported_before_cycle <> 0
                then 'mismatch'
            when differences.cycle_unexported_valid_clicks <> 0 then 'not_exported_yet'
            else 'ok'
        end as status
    from differences

),

final as (

    select
        {{ run_date_literal() }} as run_date,
        rental_id::text as rental_id,
        click_date::date as click_date,
        renter_id::text as renter_id,
        cycle_stripe_customer_id::text as cycle_stripe_customer_id,
        attributed_clicks::bigint as attributed_clicks,
        rollup_total_clicks::bigint as rollup_total_clicks,
        attributed_minus_rollup::bigint as attributed_minus_rollup,
        attributed_invalidated_clicks::bigint as attributed_invalidated_clicks,
        rollup_late_invalidated_clicks::bigint as rollup_late_invalidated_clicks,
        invalidations_minus_rollup::bigint as invalidations_minus_rollup,
        rollup_valid_clicks::bigint as rollup_valid_clicks,
        ledger_total_clicks::bigint as ledger_total_clicks,
        ledger_valid_clicks::bigint as ledger_valid_clicks,
        rollup_minus_ledger_total::bigint as rollup_minus_ledger_total,
        rollup_minus_ledger_valid::bigint as rollup_minus_ledger_valid,
        ledger_valid_clicks_before_cycle::bigint as ledger_valid_clicks_before_cycle,
        exported_valid_clicks_before_cycle::bigint as exported_valid_clicks_before_cycle,
        ledger_minus_exported_before_cycle::bigint as ledger_minus_exported_before_cycle,
        cycle_valid_clicks_delta::bigint as cycle_valid_clicks_delta,
        cycle_exported_valid_clicks::bigint as cycle_exported_valid_clicks,
        cycle_unexported_valid_clicks::bigint as cycle_unexported_valid_clicks,
        has_cycle_late_invalidation::boolean as has_cycle_late_invalidation,
        is_estimated::boolean as is_estimated,
        ({{ run_date_literal() }} - click_date)::integer as age_days,
        status::text as status
    from statused
    where
        click_date >= {{ lookback_start_date() }}
        or is_booked_in_cycle
        or status <> 'ok'

)

select * from final
