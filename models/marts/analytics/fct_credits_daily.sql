{#- A table: the ledger it reads is small (one entry per rental-day and cycle that changed) and
    append-only, so a full rebuild each cycle is cheap and always equals the ledger. -#}
with adjustments as (

    select * from {{ ref('click_adjustments') }}

),

-- an entry that lowers billable usage: a credit the renter sees on their invoice
credits as (

    select
        rental_id,
        click_date,
        booked_cycle,
        reason_code,
        reason,
        route_id,
        renter_id,
        owner_id,
        stripe_customer_id,
        late_invalidated_clicks_delta,
        invalid_clicks_delta,
        givt_clicks_delta,
        sivt_clicks_delta,
        total_clicks_delta,
        is_estimated,
        booked_at,
        -valid_clicks_delta as credited_clicks
    from adjustments
    where valid_clicks_delta < 0

),

final as (

    select
        rental_id::text as rental_id,
        click_date::date as click_date,
        booked_cycle::date as booked_cycle,
        reason_code::text as reason_code,
        reason::text as reason,
        route_id::text as route_id,
        renter_id::text as renter_id,
        owner_id::text as owner_id,
        stripe_customer_id::text as stripe_customer_id,
        credited_clicks::bigint as credited_clicks,
        late_invalidated_clicks_delta::bigint as late_invalidated_clicks_delta,
        invalid_clicks_delta::bigint as invalid_clicks_delta,
        givt_clicks_delta::bigint as givt_clicks_delta,
        sivt_clicks_delta::bigint as sivt_clicks_delta,
        total_clicks_delta::bigint as total_clicks_delta,
        is_estimated::boolean as is_estimated,
        booked_at::timestamptz as booked_at
    from credits

)

select * from final
