-- Assertion: every rental-day with landed clicks inside the rental's [starts_at, ends_at) has a
-- click_rollups row, for every day this cycle's build reprocessed. Failing rows: rental-days
-- whose route and renter landed clicks while the rental was active but that have no rollup.
with touched_days as (

    {{ rollup_touched_days() }}

),

click_hours as (

    select * from {{ ref('stg_ae__click_hours') }}

),

rentals as (

    select * from {{ ref('stg_app__rentals') }}

),

rollups as (

    select * from {{ ref('click_rollups') }}

),

candidate_pairs as (

    select
        rentals.rental_id,
        click_hours.click_date,
        click_hours.rental_id as reported_rental_id,
        count(*) over (partition by click_hours.click_row_key) as candidate_count
    from click_hours
    inner join touched_days
        on click_hours.click_date = touched_days.click_date
    inner join rentals
        on
            click_hours.route_id = rentals.route_id
            and click_hours.renter_id = rentals.renter_id
            and click_hours.click_hour + interval '1 hour' > rentals.starts_at
            and (rentals.ends_at is null or click_hours.click_hour < rentals.ends_at)
    where click_hours.clicks > 0

),

-- only hours a single rental covers: where several do, attribution_has_no_rejected_rows or
-- the Worker's named rental decides, and this test would merely repeat attribution
active_rental_days as (

    select distinct
        rental_id,
        click_date
    from candidate_pairs
    where
        candidate_count = 1
        and (reported_rental_id is null or reported_rental_id = rental_id)

),

missing as (

    select active_rental_days.*
    from active_rental_days
    left outer join rollups
        on
            active_rental_days.rental_id = rollups.rental_id
            and active_rental_days.click_date = rollups.click_date
    where rollups.rental_id is null

)

select * from missing
