-- Asserts: in the cycle run_date, every rental-day agrees from attribution to export:
-- attributed = rollups, invalidations = rollups, rollups = ledger, and every earlier cycle's
-- entries were sent. The cycle's own export being outstanding is not a failure.
select
    run_date,
    rental_id,
    click_date,
    status,
    attributed_minus_rollup,
    invalidations_minus_rollup,
    rollup_minus_ledger_total,
    rollup_minus_ledger_valid,
    ledger_minus_exported_before_cycle
from {{ ref('reconciliation_rentals') }}
where
    run_date = {{ run_date_literal() }}
    and (
        status = 'mismatch'
        or attributed_minus_rollup <> 0
        or invalidations_minus_rollup <> 0
        or rollup_minus_ledger_total <> 0
        or rollup_minus_ledger_valid <> 0
        or ledger_minus_exported_before_cycle <> 0
    )
