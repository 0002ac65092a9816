-- Assertion: every landed click hour and invalidation hour is either attributed to exactly one
-- rental or unattributed. Failing rows are disagreements (the Worker named a rental that does
-- not cover the hour) and ambiguities (an older Worker's row matches several rentals).
with rejected_clicks as (

    select
        'click' as row_kind,
        click_row_key as row_key,
        click_hour as concerned_hour,
        route_id,
        renter_id,
        reported_rental_id,
        attribution_status,
        candidate_count
    from {{ ref('int_click_hours_rejected') }}

),

rejected_invalidations as (

    select
        'invalidation' as row_kind,
        invalidation_row_key as row_key,
        original_click_hour as concerned_hour,
        route_id,
        renter_id,
        reported_rental_id,
        attribution_status,
        candidate_count
    from {{ ref('int_invalidations_matched') }}
    where attribution_status in ('disagreement', 'ambiguous')

),

failures as (

    select * from rejected_clicks
    union all
    select * from rejected_invalidations

)

select * from failures
