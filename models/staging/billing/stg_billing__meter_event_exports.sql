with exports as (

    select * from {{ source('billing', 'meter_event_exports') }}

),

renamed as (

    select
        identifier,
        booked_cycle,
        rental_id,
        click_date,
        entry_kind,
        stripe_customer_id,
        event_name,
        value,
        event_timestamp,
        (event_timestamp at time zone 'utc')::date as event_date,
        revision,
        status as export_status,
        status = 'sent' as is_sent,
        attempts,
        created_at,
        sent_at
    from exports

)

select * from renamed
