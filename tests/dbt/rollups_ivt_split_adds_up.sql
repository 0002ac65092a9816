-- Assertion: every invalid click of a rental-day is either GIVT or SIVT, never both and never
-- neither (givt_clicks + sivt_clicks = invalid_clicks). Failing rows: rental-days where the
-- split does not add up.
select
    rental_id,
    click_date,
    invalid_clicks,
    givt_clicks,
    sivt_clicks
from {{ ref('click_rollups') }}
where givt_clicks + sivt_clicks != invalid_clicks
