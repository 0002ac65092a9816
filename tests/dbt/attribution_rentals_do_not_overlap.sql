-- Assertion: one route has at most one rental at any instant ([starts_at, ends_at) intervals of
-- a route never overlap). Attribution and billing assume it, so this test sits upstream of
-- click_rollups and its failure blocks the billing export. Failing rows: overlapping pairs.
with rentals as (

    select * from {{ ref('stg_app__rentals') }}

),

overlapping_pairs as (

    select
        earlier.route_id,
        earlier.rental_id as earlier_rental_id,
        later.rental_id as later_rental_id,
        earlier.starts_at as earlier_starts_at,
        earlier.ends_at as earlier_ends_at,
        later.starts_at as later_starts_at,
        later.ends_at as later_ends_at
    from rentals as earlier
    inner join rentals as later
        on
            earlier.route_id = later.route_id
            and earlier.rental_id < later.rental_id
            and earlier.starts_at < coalesce(later.ends_at, 'infinity'::timestamptz)
            and later.starts_at < coalesce(earlier.ends_at, 'infinity'::timestamptz)

)

select * from overlapping_pairs
