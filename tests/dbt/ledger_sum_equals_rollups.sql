-- Asserts: for every rental-day, the sum of the ledger entries booked through cycle run_date
-- equals click_rollups as built by that cycle, component by component. A returned row is a
-- rental-day the ledger would bill differently from the rollups.
with entries as (

    select * from {{ ref('click_adjustments') }}
    where booked_cycle <= {{ run_date_literal() }}

),

rollups as (

    select * from {{ ref('click_rollups') }}
    where click_date <= {{ run_date_literal() }}

),

ledger_sums as (

    select
        rental_id,
        click_date,
        sum(total_clicks_delta) as total_clicks,
        sum(invalid_clicks_delta) as invalid_clicks,
        sum(givt_clicks_delta) as givt_clicks,
        sum(sivt_clicks_delta) as sivt_clicks,
        sum(late_invalidated_clicks_delta) as late_invalidated_clicks,
        sum(valid_clicks_delta) as valid_clicks
    from entries
    group by rental_id, click_date

),

compared as (

    select
        rollups.valid_clicks as rollup_valid_clicks,
        ledger_sums.valid_clicks as ledger_valid_clicks,
        coalesce(rollups.rental_id, ledger_sums.rental_id) as rental_id,
        coalesce(rollups.click_date, ledger_sums.click_date) as click_date,
        (
            coalesce(rollups.total_clicks, 0),
            coalesce(rollups.invalid_clicks, 0),
            coalesce(rollups.givt_clicks, 0),
            coalesce(rollups.sivt_clicks, 0),
            coalesce(rollups.late_invalidated_clicks, 0),
            coalesce(rollups.valid_clicks, 0)
        ) <> (
            coalesce(ledger_sums.total_clicks, 0),
            coalesce(ledger_sums.invalid_clicks, 0),
            coalesce(ledger_sums.givt_clicks, 0),
            coalesce(ledger_sums.sivt_clicks, 0),
            coalesce(ledger_sums.late_invalidated_clicks, 0),
            coalesce(ledger_sums.valid_clicks, 0)
        ) as is_different
    from rollups
    full outer join ledger_sums
        on
            rollups.rental_id = ledger_sums.rental_id
            and rollups.click_date = ledger_sums.click_date

)

select * from compared
where is_different
