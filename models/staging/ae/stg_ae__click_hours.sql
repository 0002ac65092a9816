with landed as (

    select * from {{ source('ae', 'ae_clicks_hourly') }}
    -- cycle rule 1: a cycle sees nothing at or after D + 1 day, so a rerun of D reproduces it
    where click_hour < {{ cycle_end() }}

),

loads as (

    select * from {{ ref('stg_ae__loads') }}
    where is_succeeded

),

landed_hours as (

    select distinct click_hour from landed

),

-- The loader replaces a slice atomically, so only one landing per hour should exist. If a
-- replacement ever left older rows behind, only the newest succeeded load covering the hour counts.
latest_load_per_hour as (

    select distinct on (landed_hours.click_hour)
        landed_hours.click_hour,
        loads.load_id
    from landed_hours
    inner join loads
        on
            landed_hours.click_hour >= loads.slice_start
            and landed_hours.click_hour < loads.slice_end
    order by landed_hours.click_hour asc, loads.finished_at desc, loads.started_at desc

),

latest_rows as (

    select landed.*
    from landed
    inner join latest_load_per_hour
        on
            landed.click_hour = latest_load_per_hour.click_hour
            and landed.load_id::text = latest_load_per_hour.load_id

),

renamed as (

    select
        click_hour,
        route_id,
        renter_id,
        country,
        asn,
        bot_bucket,
        referrer_domain,
        device_class,
        clicks,
        invalid_clicks as worker_invalid_clicks,
        sampled_rows,
        max_sample_interval,
        loaded_at,
        load_id::text as load_id,
        md5(concat_ws(
            '|', click_hour, route_id, renter_id, rental_id, owner_id, country, asn,
            bot_bucket, referrer_domain, device_class
        )) as click_row_key,
        (click_hour at time zone 'utc')::date as click_date,
        -- an older Worker sends no rental_id; attribution then relies on the system of record
        nullif(rental_id, '') as rental_id,
        nullif(owner_id, '') as reported_owner_id
    from latest_rows

)

select * from renamed
