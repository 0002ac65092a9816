{#- on_schema_change fail: a changed column list would silently change what the ledger books,
    so a schema change must be a deliberate full refresh. -#}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['rental_id', 'click_date'],
        on_schema_change='fail',
        indexes=[
            {'columns': ['rental_id', 'click_date'], 'unique': true},
            {'columns': ['click_date']},
        ],
    )
}}

with click_hours as (

    select * from {{ ref('int_click_hours_attributed') }}

),

invalidations as (

    select * from {{ ref('int_invalidations_attributed') }}

),

-- the newest cycle that built this table; null on a first build or a full refresh
previous_build as (

    {% if is_incremental() %}
        -- the newest cycle before this one: a rerun or a replay of cycle D must see again the
        -- invalidations written since that cycle, or days they name would keep stale counts
        select max(built_cycle) as last_built_cycle from {{ this }}
        where built_cycle < {{ run_date_literal() }}
    {% else %}
        select null::date as last_built_cycle
    {% endif %}

),

lookback_days as (

    select generate_series(
        {{ lookback_start_date() }}, {{ run_date_literal() }}, interval '1 day'
    )::date as click_date

),

-- cycle rule 3: a day named by an invalidation written since the previous build is rebuilt
-- even when it has left the lookback
named_days as (

    select distinct invalidations.original_click_date as click_date
    from invalidations
    cross join previous_build
    where
        previous_build.last_built_cycle is null
        or invalidations.written_hour
        >= (previous_build.last_built_cycle + 1)::timestamp at time zone 'utc'

),

-- with no previous build, every day the cycle can see is built
first_build_days as (

    select click_hours.click_date
    from click_hours
    cross join previous_build
    where previous_build.last_built_cycle is null

),

reprocessed_days as (

    select click_date from lookback_days
    union
    select click_date from named_days
    union
    select click_date from first_build_days

),

-- rows already built for the days being rebuilt: a key whose clicks vanished must go to
-- zero rather than keep a stale count, and the history columns carry over
existing as (

    {% if is_incremental() %}
        select this_build.*
        from {{ this }} as this_build
        inner join reprocessed_days
            on this_build.click_date = reprocessed_days.click_date
    {% else %}
        select
            null::text as rental_id,
            null::date as click_date,
            null::text as route_id,
            null::text as renter_id,
            null::text as owner_id,
            null::bigint as total_clicks,
            null::bigint as invalid_clicks,
            null::bigint as givt_clicks,
            null::bigint as sivt_clicks,
            null::bigint as late_invalidated_clicks,
            null::bigint as valid_clicks,
            null::bigint as sampled_rows,
            null::bigint as max_sample_interval,
            null::boolean as is_estimated,
            null::date as first_seen_cycle,
            null::date as last_changed_cycle,
            null::date as built_cycle
        where false
    {% endif %}

),

day_clicks as (

    select
        click_hours.rental_id,
        click_hours.click_date,
        click_hours.route_id,
        click_hours.renter_id,
        click_hours.owner_id,
        sum(click_hours.clicks) as total_clicks,
        sum(click_hours.invalid_clicks) as invalid_clicks,
        sum(click_hours.givt_clicks) as givt_clicks,
        sum(click_hours.sivt_clicks) as sivt_clicks,
        sum(click_hours.sampled_rows) as sampled_rows,
        max(click_hours.max_sample_interval) as max_sample_interval
    from click_hours
    inner join reprocessed_days
        on click_hours.click_date = reprocessed_days.click_date
    group by 1, 2, 3, 4, 5

),

day_invalidations as (

    select
        invalidations.rental_id,
        invalidations.original_click_date as click_date,
        invalidations.route_id,
        invalidations.renter_id,
        invalidations.owner_id,
        sum(invalidations.invalidated_clicks) as late_invalidated_clicks,
        sum(invalidations.sampled_rows) as sampled_rows,
        max(invalidations.max_sample_interval) as max_sample_interval
    from invalidations
    inner join reprocessed_days
        on invalidations.original_click_date = reprocessed_days.click_date
    group by 1, 2, 3, 4, 5

),

rebuilt as (

    select
        coalesce(day_clicks.rental_id, day_invalidations.rental_id) as rental_id,
        coalesce(day_clicks.click_date, day_invalidations.click_date) as click_date,
        coalesce(day_clicks.route_id, day_invalidations.route_id) as route_id,
        coalesce(day_clicks.renter_id, day_invalidations.renter_id) as renter_id,
        coalesce(day_clicks.owner_id, day_invalidations.owner_id) as owner_id,
        coalesce(day_clicks.total_clicks, 0) as total_clicks,
        coalesce(day_clicks.invalid_clicks, 0) as invalid_clicks,
        coalesce(day_clicks.givt_clicks, 0) as givt_clicks,
        coalesce(day_clicks.sivt_clicks, 0) as sivt_clicks,
        coalesce(day_invalidations.late_invalidated_clicks, 0) as late_invalidated_clicks,
        coalesce(day_clicks.sampled_rows, 0)
        + coalesce(day_invalidations.sampled_rows, 0) as sampled_rows,
        greatest(
            day_clicks.max_sample_interval, day_invalidations.max_sample_interval
        ) as max_sample_interval
    from day_clicks
    full outer join day_invalidations
        on
            day_clicks.rental_id = day_invalidations.rental_id
            and day_clicks.click_date = day_invalidations.click_date

),

merged as (

    select
        existing.total_clicks as previous_total_clicks,
        existing.invalid_clicks as previous_invalid_clicks,
        existing.givt_clicks as previous_givt_clicks,
        existing.sivt_clicks as previous_sivt_clicks,
        existing.late_invalidated_clicks as previous_late_invalidated_clicks,
        existing.sampled_rows as previous_sampled_rows,
        existing.max_sample_interval as previous_max_sample_interval,
        existing.first_seen_cycle as previous_first_seen_cycle,
        existing.last_changed_cycle as previous_last_changed_cycle,
        coalesce(rebuilt.rental_id, existing.rental_id) as rental_id,
        coalesce(rebuilt.click_date, existing.click_date) as click_date,
        coalesce(rebuilt.route_id, existing.route_id) as route_id,
        coalesce(rebuilt.renter_id, existing.renter_id) as renter_id,
        coalesce(rebuilt.owner_id, existing.owner_id) as owner_id,
        coalesce(rebuilt.total_clicks, 0) as total_clicks,
        coalesce(rebuilt.invalid_clicks, 0) as invalid_clicks,
        coalesce(rebuilt.givt_clicks, 0) as givt_clicks,
        coalesce(rebuilt.sivt_clicks, 0) as sivt_clicks,
        coalesce(rebuilt.late_invalidated_clicks, 0) as late_invalidated_clicks,
        coalesce(rebuilt.sampled_rows, 0) as sampled_rows,
        -- a key that vanished keeps no sample: 1 means "exact", like a row of unsampled points
        coalesce(rebuilt.max_sample_interval, 1) as max_sample_interval,
        existing.rental_id is not null as was_built
    from rebuilt
    full outer join existing
        on
            rebuilt.rental_id = existing.rental_id
            and rebuilt.click_date = existing.click_date

),

final as (

    select
        rental_id::text as rental_id,
        click_date::date as click_date,
        route_id::text as route_id,
        renter_id::text as renter_id,
        owner_id::text as owner_id,
        total_clicks::bigint as total_clicks,
        invalid_clicks::bigint as invalid_clicks,
        givt_clicks::bigint as givt_clicks,
        sivt_clicks::bigint as sivt_clicks,
        late_invalidated_clicks::bigint as late_invalidated_clicks,
        (total_clicks - invalid_clicks - late_invalidated_clicks)::bigint as valid_clicks,
        sampled_rows::bigint as sampled_rows,
        max_sample_interval::bigint as max_sample_interval,
        max_sample_interval > 1 as is_estimated,
        coalesce(previous_first_seen_cycle, {{ run_date_literal() }}) as first_seen_cycle,
        case
            when
                not was_built
                or total_clicks != previous_total_clicks
                or invalid_clicks != previous_invalid_clicks
                or givt_clicks != previous_givt_clicks
                or sivt_clicks != previous_sivt_clicks
                or late_invalidated_clicks != previous_late_invalidated_clicks
                or sampled_rows != previous_sampled_rows
                or max_sample_interval != previous_max_sample_interval
                then {{ run_date_literal() }}
            else previous_last_changed_cycle
        end as last_changed_cycle,
        {{ run_date_literal() }} as built_cycle
    from merged

)

select * from final
