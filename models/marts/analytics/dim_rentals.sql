with rentals as (

    select * from {{ ref('stg_app__rentals') }}

),

routes as (

    select * from {{ ref('stg_app__routes') }}

),

renters as (

    select * from {{ ref('stg_app__renters') }}

),

joined as (

    select
        rentals.rental_id,
        rentals.route_id,
        rentals.renter_id,
        rentals.owner_id,
        rentals.starts_at,
        rentals.ends_at,
        rentals.rental_status as status,
        renters.stripe_customer_id,
        routes.host,
        routes.path
    from rentals
    inner join routes
        on rentals.route_id = routes.route_id
    inner join renters
        on rentals.renter_id = renters.renter_id

)

select * from joined
