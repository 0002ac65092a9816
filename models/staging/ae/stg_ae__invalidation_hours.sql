with landed as (

    select * from {{ source('ae', 'ae_invalidations_hourly') }}
    -- cycle rule 3: invalidations count by their own write time, not the day they concern
    where written_hour < {{ cycle_end() }}

),

loads as (

    select * from {{ ref('stg_ae__loads') }}
    where is_succeeded

),

landed_hours as (

    select distinct written_hour from landed

),

-- Same defence as the click hours: keep the newest succeeded landing of each written hour.
latest_load_per_hour as (

    select distinct on (landed_hours.written_hour)
        landed_hours.written_hour,
        loads.load_id
    from landed_hours
    inner join loads
        on
            landed_hours.written_hour >= loads.slice_start
            and landed_hours.written_hour < loads.slice_end
    order by landed_hours.written_hour asc, loads.finished_at desc, loads.started_at desc

),

latest_rows as (

    select landed.*
    from landed
    inner join latest_load_per_hour
        on
            landed.written_hour = latest_load_per_hour.written_hour
            and landed.load_id::text = latest_load_per_hour.load_id

),

renamed as (

    select
        written_hour,
        original_click_hour,
        route_id,
        renter_id,
        invalidation_reason,
        invalidated_clicks,
        sampled_rows,
        max_sample_interval,
        loaded_at,
        load_id::text as load_id,
        md5(concat_ws(
            '|', written_hour, original_click_hour, route_id, renter_id, rental_id, owner_id,
            invalidation_reason
        )) as invalidation_row_key,
        (original_click_hour at time zone 'utc')::date as original_click_date,
        nullif(rental_id, '') as rental_id,
        nullif(owner_id, '') as reported_owner_id
    from latest_rows

)

select * from renamed
