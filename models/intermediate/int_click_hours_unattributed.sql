-- Landed hours no rental claims: visible for analysis and reconciliation, never billed.
with matched as (

    select * from {{ ref('int_click_hours_matched') }}

),

unattributed as (

    select
        click_row_key,
        click_hour,
        click_date,
        route_id,
        renter_id,
        reported_rental_id,
        reported_owner_id,
        country,
        asn,
        bot_bucket,
        referrer_domain,
        device_class,
        clicks,
        worker_invalid_clicks,
        sampled_rows,
        max_sample_interval,
        load_id
    from matched
    where attribution_status = 'unattributed'

)

select * from unattributed
