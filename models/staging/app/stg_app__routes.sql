with routes as (

    select * from {{ source('app', 'routes') }}

),

renamed as (

    select
        route_id,
        owner_id,
        host,
        path,
        created_at
    from routes

)

select * from renamed
