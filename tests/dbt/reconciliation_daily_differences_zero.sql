-- Asserts: in the cycle run_date, every step from AE landing to Stripe agrees for every day:
-- landed = attributed + unattributed + rejected, attributed = rollups, invalidations = rollups,
-- rollups = ledger, earlier cycles fully exported, and sent = Stripe once Stripe can be
-- compared. The cycle's own export being outstanding is not a failure (not_exported_yet).
select
    run_date,
    click_date,
    status,
    landed_minus_attribution,
    attributed_minus_rollup,
    invalidations_minus_rollup,
    rollup_minus_ledger_total,
    rollup_minus_ledger_valid,
    ledger_minus_exported_before_cycle,
    exported_minus_stripe
from {{ ref('reconciliation_daily') }}
where
    run_date = {{ run_date_literal() }}
    and (
        status = 'mismatch'
        or landed_minus_attribution <> 0
        or attributed_minus_rollup <> 0
        or invalidations_minus_rollup <> 0
        or rollup_minus_ledger_total <> 0
        or rollup_minus_ledger_valid <> 0
        or ledger_minus_exported_before_cycle <> 0
        or coalesce(exported_minus_stripe, 0) <> 0
    )
