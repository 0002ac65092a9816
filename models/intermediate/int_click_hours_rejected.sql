-- Landed hours the attribution refuses to decide: the Worker named a rental that is not a
-- candidate (disagreement), or an older Worker's row matches several rentals (ambiguous).
-- Any row here fails a data test, which blocks the billing export until someone looks.
with matched as (

    select * from {{ ref('int_click_hours_matched') }}

),

rejected as (

    select
        click_row_key,
        click_hour,
        click_date,
        route_id,
        renter_id,
        reported_rental_id,
        reported_owner_id,
        clicks,
        worker_invalid_clicks,
        sampled_rows,
        max_sample_interval,
        load_id,
        candidate_count,
        attribution_status
    from matched
    where attribution_status in ('disagreement', 'ambiguous')

)

select * from rejected
