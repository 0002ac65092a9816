{#- A table rebuilt every cycle: the export (loaders/export.py) reads exactly this cycle's
    entries, and the billing gate checks that this model succeeded in the cycle's build.
    The refs below are only there to put this model downstream of every test that protects
    billing, so `dbt build` skips it when one of them fails. -#}
-- depends_on: {{ ref('click_adjustments_checksums') }}
-- depends_on: {{ ref('reconciliation_daily') }}
-- depends_on: {{ ref('reconciliation_rentals') }}
{{ config(materialized='table') }}

with entries as (

    select * from {{ ref('click_adjustments') }}
    where booked_cycle = {{ run_date_literal() }}

),

-- an entry that moves no billable usage (e.g. GIVT judged SIVT) sends nothing
billable as (

    select * from entries
    where valid_clicks_delta <> 0

),

-- usage lands on its own day; an adjustment lands in the open period, on its cycle
stamped as (

    select
        *,
        (
            case when entry_kind = 'usage' then click_date else booked_cycle end
            + time '12:00'
        ) at time zone 'utc' as event_timestamp
    from billable

),

final as (

    select
        booked_cycle,
        rental_id,
        click_date,
        entry_kind,
        stripe_customer_id,
        -- noqa: disable=RF04
        -- the export (loaders/export.py) codes against the column name value
        valid_clicks_delta as value,
        -- noqa: enable=RF04
        event_timestamp,
        reason
    from stamped

)

select * from final
