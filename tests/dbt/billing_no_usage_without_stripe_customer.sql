-- Asserts: no entry the cycle would bill belongs to a renter without a Stripe customer.
-- Such an entry could not be sent; the export waits until app.renters names the customer
-- and the cycle is rerun. A returned row names the rental, its renter and the usage held back.
with entries as (

    select * from {{ ref('click_adjustments') }}
    where booked_cycle = {{ run_date_literal() }}

),

rentals as (

    select * from {{ ref('stg_app__rentals') }}

)

select
    entries.rental_id,
    entries.click_date,
    entries.renter_id,
    rentals.rental_status,
    entries.valid_clicks_delta
from entries
left outer join rentals
    on entries.rental_id = rentals.rental_id
where entries.valid_clicks_delta <> 0 and entries.stripe_customer_id is null
