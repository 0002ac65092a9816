-- Assertion: late invalidations never take away more than a rental-day's clicks that were
-- valid at click time (valid_clicks is never below zero). Failing rows: the rental-days where
-- they do, which would book a negative usage.
select
    rental_id,
    click_date,
    total_clicks,
    invalid_clicks,
    late_invalidated_clicks,
    valid_clicks
from {{ ref('click_rollups') }}
where valid_clicks < 0
