-- Assertion: no landed click is counted twice or lost. For every day this cycle's build
-- reprocessed, the clicks in click_rollups plus the unattributed and rejected clicks equal the
-- clicks landed for that day. Failing rows: days whose two sides differ.
with touched_days as (

    {{ rollup_touched_days() }}

),

landed as (

    select
        click_date,
        sum(clicks) as clicks
    from {{ ref('stg_ae__click_hours') }}
    group by click_date

),

rolled_up as (

    select
        click_date,
        sum(total_clicks) as clicks
    from {{ ref('click_rollups') }}
    group by click_date

),

unattributed as (

    select
        click_date,
        sum(clicks) as clicks
    from {{ ref('int_click_hours_unattributed') }}
    group by click_date

),

rejected as (

    select
        click_date,
        sum(clicks) as clicks
    from {{ ref('int_click_hours_rejected') }}
    group by click_date

),

compared as (

    select
        touched_days.click_date,
        coalesce(landed.clicks, 0) as landed_clicks,
        coalesce(rolled_up.clicks, 0) as rolled_up_clicks,
        coalesce(unattributed.clicks, 0) as unattributed_clicks,
        coalesce(rejected.clicks, 0) as rejected_clicks
    from touched_days
    left outer join landed
        on touched_days.click_date = landed.click_date
    left outer join rolled_up
        on touched_days.click_date = rolled_up.click_date
    left outer join unattributed
        on touched_days.click_date = unattributed.click_date
    left outer join rejected
        on touched_days.click_date = rejected.click_date

),

failures as (

    select * from compared
    where landed_clicks != rolled_up_clicks + unattributed_clicks + rejected_clicks

)

select * from failures
