-- Warns: a rental-day still open (unexported or mismatched) or corrected by a late
-- invalidation in this cycle is older than var retention_warn_days (80): AE keeps about 92
-- days, after which the day can no longer be re-read to settle a dispute. Returned rows are
-- the days to settle first.
{{ config(severity='warn') }}

select
    rental_id,
    click_date,
    age_days,
    status,
    has_cycle_late_invalidation,
    cycle_unexported_valid_clicks
from {{ ref('reconciliation_rentals') }}
where
    run_date = {{ run_date_literal() }}
    and age_days >= {{ retention_warn_days() }}
    and (status <> 'ok' or has_cycle_late_invalidation)
