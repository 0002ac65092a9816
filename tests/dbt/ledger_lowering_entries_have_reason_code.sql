-- Asserts: every ledger entry that lowers billable usage names why (reason_code), so a credit
-- report per rental can be read off the ledger. A returned row is an unexplained credit.
select
    rental_id,
    click_date,
    booked_cycle,
    entry_kind,
    reason,
    valid_clicks_delta
from {{ ref('click_adjustments') }}
where valid_clicks_delta < 0 and reason_code is null
