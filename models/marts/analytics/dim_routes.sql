with routes as (

    select * from {{ ref('stg_app__routes') }}

),

selected as (

    select
        route_id,
        owner_id,
        host,
        path,
        created_at
    from routes

)

select * from selected
