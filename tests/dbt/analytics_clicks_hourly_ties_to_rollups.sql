-- Assertion: on every day this cycle's build reprocessed, the attributed rows of
-- fct_clicks_hourly add up, per rental-day, to click_rollups' total_clicks and invalid_clicks
-- (a rental-day click_rollups carries at zero has no row here). Failing rows: rental-days
-- whose figures differ. Late invalidations are not compared: the hourly mart has none.
with touched_days as (

    {{ rollup_touched_days() }}

),

hourly as (

    select * from {{ ref('fct_clicks_hourly') }}
    where is_attributed

),

rollups as (

    select * from {{ ref('click_rollups') }}

),

hourly_rental_days as (

    select
        hourly.rental_id,
        hourly.click_date,
        sum(hourly.total_clicks) as total_clicks,
        sum(hourly.invalid_clicks) as invalid_clicks
    from hourly
    inner join touched_days
        on hourly.click_date = touched_days.click_date
    group by 1, 2

),

rollup_rental_days as (

    select
        rollups.rental_id,
        rollups.click_date,
        rollups.total_clicks,
        rollups.invalid_clicks
    from rollups
    inner join touched_days
        on rollups.click_date = touched_days.click_date

),

compared as (

    select
        coalesce(hourly_rental_days.rental_id, rollup_rental_days.rental_id) as rental_id,
        coalesce(hourly_rental_days.click_date, rollup_rental_days.click_date) as click_date,
        coalesce(hourly_rental_days.total_clicks, 0) as hourly_total_clicks,
        coalesce(rollup_rental_days.total_clicks, 0) as rollup_total_clicks,
        coalesce(hourly_rental_days.invalid_clicks, 0) as hourly_invalid_clicks,
        coalesce(rollup_rental_days.invalid_clicks, 0) as rollup_invalid_clicks
    from hourly_rental_days
    full outer join rollup_rental_days
        on
            hourly_rental_days.rental_id = rollup_rental_days.rental_id
            and hourly_rental_days.click_date = rollup_rental_days.click_date

),

failures as (

    select * from compared
    where
        hourly_total_clicks != rollup_total_clicks
        or hourly_invalid_clicks != rollup_invalid_clicks

)

select * from failures
