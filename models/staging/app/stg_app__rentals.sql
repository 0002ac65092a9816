with rentals as (

    select * from {{ source('app', 'rentals') }}

),

renamed as (

    select
        rental_id,
        route_id,
        renter_id,
        owner_id,
        starts_at,
        ends_at,
        status as rental_status
    from rentals

)

select * from renamed
