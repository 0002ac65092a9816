-- Assertion: for every day this cycle's build reprocessed, each rental-day of click_rollups
-- carries exactly the landed, attributed totals (clicks, invalid clicks, late invalidations),
-- and no attributed rental-day is missing. Failing rows: rental-days whose figures differ.
with touched_days as (

    {{ rollup_touched_days() }}

),

rollups as (

    select * from {{ ref('click_rollups') }}

),

click_hours as (

    select * from {{ ref('int_click_hours_attributed') }}

),

invalidations as (

    select * from {{ ref('int_invalidations_attributed') }}

),

expected_clicks as (

    select
        click_hours.rental_id,
        click_hours.click_date,
        sum(click_hours.clicks) as total_clicks,
        sum(click_hours.invalid_clicks) as invalid_clicks
    from click_hours
    inner join touched_days
        on click_hours.click_date = touched_days.click_date
    group by 1, 2

),

expected_invalidations as (

    select
        invalidations.rental_id,
        invalidations.original_click_date as click_date,
        sum(invalidations.invalidated_clicks) as late_invalidated_clicks
    from invalidations
    inner join touched_days
        on invalidations.original_click_date = touched_days.click_date
    group by 1, 2

),

expected as (

    select
        coalesce(expected_clicks.rental_id, expected_invalidations.rental_id) as rental_id,
        coalesce(expected_clicks.click_date, expected_invalidations.click_date) as click_date,
        coalesce(expected_clicks.total_clicks, 0) as total_clicks,
        coalesce(expected_clicks.invalid_clicks, 0) as invalid_clicks,
        coalesce(expected_invalidations.late_invalidated_clicks, 0) as late_invalidated_clicks
    from expected_clicks
    full outer join expected_invalidations
        on
            expected_clicks.rental_id = expected_invalidations.rental_id
            and expected_clicks.click_date = expected_invalidations.click_date

),

built as (

    select rollups.*
    from rollups
    inner join touched_days
        on rollups.click_date = touched_days.click_date

),

compared as (

    select
        built.total_clicks as built_total_clicks,
        built.invalid_clicks as built_invalid_clicks,
        built.late_invalidated_clicks as built_late_invalidated_clicks,
        coalesce(expected.rental_id, built.rental_id) as rental_id,
        coalesce(expected.click_date, built.click_date) as click_date,
        coalesce(expected.total_clicks, 0) as expected_total_clicks,
        coalesce(expected.invalid_clicks, 0) as expected_invalid_clicks,
        coalesce(expected.late_invalidated_clicks, 0) as expected_late_invalidated_clicks
    from expected
    full outer join built
        on
            expected.rental_id = built.rental_id
            and expected.click_date = built.click_date

),

failures as (

    select * from compared
    where
        (
            expected_total_clicks, expected_invalid_clicks, expected_late_invalidated_clicks
        ) is distinct from (
            built_total_clicks, built_invalid_clicks, built_late_invalidated_clicks
        )

)

select * from failures
