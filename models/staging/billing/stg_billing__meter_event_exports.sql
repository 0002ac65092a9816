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
        revision,
        status as export_status,
        attempts,
        created_at,
        sent_at,
        (event_timestamp at time zone 'utc')::date as event_date,
        status = 'sent' as is_sent
    from exports

)

select * from renamed
