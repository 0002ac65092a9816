with summaries as (

    select * from {{ source('billing', 'stripe_event_summaries') }}

),

renamed as (

    select
        stripe_customer_id,
        meter_id,
        event_name,
        start_time,
        end_time,
        aggregated_value,
        fetched_at,
        (start_time at time zone 'utc')::date as event_date,
        -- only whole UTC days compare with the export's per-day totals
        end_time - start_time = interval '1 day'
        and (start_time at time zone 'utc')::time = time '00:00' as is_utc_day
    from summaries

)

select * from renamed
