with matched as (

    select * from {{ ref('int_invalidations_matched') }}
    where attribution_status = 'attributed'

),

rentals as (

    select * from {{ ref('stg_app__rentals') }}

),

reason_codes as (

    select * from {{ ref('ivt_reason_codes') }}

),

attributed as (

    select
        matched.invalidation_row_key,
        matched.written_hour,
        matched.original_click_hour,
        matched.original_click_date,
        matched.rental_id,
        rentals.route_id,
        rentals.renter_id,
        rentals.owner_id,
        matched.invalidation_reason,
        reason_codes.ivt_category,
        matched.invalidated_clicks,
        matched.sampled_rows,
        matched.max_sample_interval
    from matched
    inner join rentals
        on matched.rental_id = rentals.rental_id
    left outer join reason_codes
        on matched.invalidation_reason = reason_codes.invalidation_reason

)

select * from attributed
