{#- Incremental, one append per cycle: each row is what cycle D saw, and keeping every cycle's
    rows is the history an auditor reads. The pre-hook deletes the cycle's earlier rows so a
    rerun (or the nightly's reconcile step after the export) replaces them. -#}
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='fail',
        pre_hook="{{ ledger_delete_cycle('run_date') }}",
        indexes=[
            {'columns': ['run_date', 'click_date'], 'unique': true},
            {'columns': ['click_date']},
        ],
    )
}}

with landed_hours as (

    select * from {{ ref('stg_ae__click_hours') }}

),

attributed_hours as (

    select * from {{ ref('int_click_hours_attributed') }}

),

unattributed_hours as (

    select * from {{ ref('int_click_hours_unattributed') }}

),

rejected_hours as (

    select * from {{ ref('int_click_hours_rejected') }}

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

stripe_summaries as (

    select * from {{ ref('stg_billing__stripe_event_summaries') }}
    where is_utc_day and event_name = '{{ var("meter_event_name") }}'

),

landed_by_day as (

    select
        click_date,
        sum(clicks) as landed_clicks
    from landed_hours
    group by click_date

),

attributed_by_day as (

    select
        click_date,
        sum(clicks) as attributed_clicks
    from attributed_hours
    group by click_date

),

unattributed_by_day as (

    select
        click_date,
        sum(clicks) as unattributed_clicks
    from unattributed_hours
    group by click_date

),

rejected_by_day as (

    select
        click_date,
        sum(clicks) as rejected_clicks
    from rejected_hours
    group by click_date

),

invalidations_by_day as (

    select
        original_click_date as click_date,
        sum(invalidated_clicks) as attributed_invalidated_clicks
    from invalidations
    group by original_click_date

),

rollups_by_day as (

    select
        click_date,
        sum(total_clicks) as rollup_total_clicks,
        sum(late_invalidated_clicks) as rollup_late_invalidated_clicks,
        sum(valid_clicks) as rollup_valid_clicks,
        count(*) as rental_days,
        count(*) filter (where is_estimated) as estimated_rental_days,
        coalesce(sum(valid_clicks) filter (where is_estimated), 0) as estimated_valid_clicks
    from rollups
    group by click_date

),

ledger_by_day as (

    select
        click_date,
        sum(total_clicks_delta) as ledger_total_clicks,
        sum(valid_clicks_delta) as ledger_valid_clicks,
        coalesce(
            sum(valid_clicks_delta) filter (where booked_cycle < {{ run_date_literal() }}), 0
        ) as ledger_valid_clicks_before_cycle,
        coalesce(
            sum(valid_clicks_delta) filter (where booked_cycle = {{ run_date_literal() }}), 0
        ) as cycle_valid_clicks_delta
    from entries
    group by click_date

),

exported_by_click_day as (

    select
        click_date,
        coalesce(
            sum(value) filter (where booked_cycle < {{ run_date_literal() }}), 0
        ) as exported_valid_clicks_before_cycle,
        coalesce(
            sum(value) filter (where booked_cycle = {{ run_date_literal() }}), 0
        ) as cycle_exported_valid_clicks
    from exports
    group by click_date

),

-- Stripe sums per customer and UTC day of the event timestamp, not per click date: a usage
-- entry is stamped on its click date, an adjustment on its booking cycle. This side compares
-- the two on the event day, which is the row's date.
exported_by_event_day as (

    select
        event_date,
        sum(value) as exported_event_day_value,
        max(sent_at) as last_sent_at
    from exports
    group by event_date

),

stripe_by_event_day as (

    select
        event_date,
        sum(aggregated_value) as stripe_event_day_value,
        min(fetched_at) as first_fetched_at
    from stripe_summaries
    group by event_date

),

days as (

    select click_date from landed_by_day
    union
    select click_date from rollups_by_day
    union
    select click_date from ledger_by_day
    union
    select click_date from exported_by_click_day
    union
    select event_date as click_date from exported_by_event_day
    where event_date <= {{ run_date_literal() }}

),

joined as (

    select
        days.click_date,
        stripe_by_event_day.stripe_event_day_value,
        coalesce(landed_by_day.landed_clicks, 0) as landed_clicks,
        coalesce(attributed_by_day.attributed_clicks, 0) as attributed_clicks,
        coalesce(unattributed_by_day.unattributed_clicks, 0) as unattributed_clicks,
        coalesce(rejected_by_day.rejected_clicks, 0) as rejected_clicks,
        coalesce(invalidations_by_day.attributed_invalidated_clicks, 0)
            as attributed_invalidated_clicks,
        coalesce(rollups_by_day.rollup_total_clicks, 0) as rollup_total_clicks,
        coalesce(rollups_by_day.rollup_late_invalidated_clicks, 0)
            as rollup_late_invalidated_clicks,
        coalesce(rollups_by_day.rollup_valid_clicks, 0) as rollup_valid_clicks,
        coalesce(ledger_by_day.ledger_total_clicks, 0) as ledger_total_clicks,
        coalesce(ledger_by_day.ledger_valid_clicks, 0) as ledger_valid_clicks,
        coalesce(ledger_by_day.ledger_valid_clicks_before_cycle, 0)
            as ledger_valid_clicks_before_cycle,
        coalesce(exported_by_click_day.exported_valid_clicks_before_cycle, 0)
            as exported_valid_clicks_before_cycle,
        coalesce(ledger_by_day.cycle_valid_clicks_delta, 0) as cycle_valid_clicks_delta,
        coalesce(exported_by_click_day.cycle_exported_valid_clicks, 0)
            as cycle_exported_valid_clicks,
        coalesce(exported_by_event_day.exported_event_day_value, 0) as exported_event_day_value,
        -- Stripe is compared only once it was asked after the day's last accepted event
        stripe_by_event_day.event_date is not null
        and (
            exported_by_event_day.last_sent_at is null
            or stripe_by_event_day.first_fetched_at >= exported_by_event_day.last_sent_at
        ) as is_stripe_compared,
        coalesce(rollups_by_day.rental_days, 0) as rental_days,
        coalesce(rollups_by_day.estimated_rental_days, 0) as estimated_rental_days,
        coalesce(rollups_by_day.estimated_valid_clicks, 0) as estimated_valid_clicks
    from days
    left outer join landed_by_day
        on days.click_date = landed_by_day.click_date
    left outer join attributed_by_day
        on days.click_date = attributed_by_day.click_date
    left outer join unattributed_by_day
        on days.click_date = unattributed_by_day.click_date
    left outer join rejected_by_day
        on days.click_date = rejected_by_day.click_date
    left outer join invalidations_by_day
        on days.click_date = invalidations_by_day.click_date
    left outer join rollups_by_day
        on days.click_date = rollups_by_day.click_date
    left outer join ledger_by_day
        on days.click_date = ledger_by_day.click_date
    left outer join exported_by_click_day
        on days.click_date = exported_by_click_day.click_date
    left outer join exported_by_event_day
        on days.click_date = exported_by_event_day.event_date
    left outer join stripe_by_event_day
        on days.click_date = stripe_by_event_day.event_date

),

differences as (

    select
        joined.*,
        joined.landed_clicks - joined.attributed_clicks - joined.unattributed_clicks
        - joined.rejected_clicks as landed_minus_attribution,
        joined.attributed_clicks - joined.rollup_total_clicks as attributed_minus_rollup,
        joined.attributed_invalidated_clicks
        - joined.rollup_late_invalidated_clicks as invalidations_minus_rollup,
        joined.rollup_total_clicks - joined.ledger_total_clicks as rollup_minus_ledger_total,
        joined.rollup_valid_clicks - joined.ledger_valid_clicks as rollup_minus_ledger_valid,
        joined.ledger_valid_clicks_before_cycle
        - joined.exported_valid_clicks_before_cycle as ledger_minus_exported_before_cycle,
        joined.cycle_valid_clicks_delta
        - joined.cycle_exported_valid_clicks as cycle_unexported_valid_clicks,
        case
            when joined.is_stripe_compared
                then joined.exported_event_day_value - joined.stripe_event_day_value
        end as exported_minus_stripe
    from joined

),

final as (

    select
        {{ run_date_literal() }} as run_date,
        click_date::date as click_date,
        landed_clicks::bigint as landed_clicks,
        attributed_clicks::bigint as attributed_clicks,
        unattributed_clicks::bigint as unattributed_clicks,
        rejected_clicks::bigint as rejected_clicks,
        landed_minus_attribution::bigint as landed_minus_attribution,
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
        exported_event_day_value::bigint as exported_event_day_value,
        stripe_event_day_value::numeric(38, 6) as stripe_event_day_value,
        is_stripe_compared::boolean as is_stripe_compared,
        exported_minus_stripe::numeric(38, 6) as exported_minus_stripe,
        rental_days::bigint as rental_days,
        estimated_rental_days::bigint as estimated_rental_days,
        estimated_valid_clicks::bigint as estimated_valid_clicks,
        (
            estimated_valid_clicks::double precision / nullif(rollup_valid_clicks, 0)
        )::double precision as estimated_clicks_share,
        (
            sum(estimated_valid_clicks) over ()::double precision
            / nullif(sum(rollup_valid_clicks) over (), 0)
        )::double precision as cycle_estimated_clicks_share,
        case
            when
                landed_minus_attribution <> 0
                or attributed_minus_rollup <> 0
                or invalidations_minus_rollup <> 0
                or rollup_minus_ledger_total <> 0
                or rollup_minus_ledger_valid <> 0
                or ledger_minus_exported_before_cycle <> 0
                or coalesce(exported_minus_stripe, 0) <> 0
                then 'mismatch'
            when
                cycle_unexported_valid_clicks <> 0
                or (exported_event_day_value <> 0 and not is_stripe_compared)
                then 'not_exported_yet'
            else 'ok'
        end::text as status
    from differences
    -- AE keeps three months: older days are kept only while something about them is open
    where
        click_date > {{ run_date_literal() }} - {{ ae_retention_days() }}
        or landed_minus_attribution <> 0
        or rollup_minus_ledger_valid <> 0
        or ledger_minus_exported_before_cycle <> 0
        or cycle_unexported_valid_clicks <> 0

)

select * from final
