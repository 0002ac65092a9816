with renters as (

    select * from {{ ref('stg_app__renters') }}

),

selected as (

    select
        renter_id,
        renter_name,
        stripe_customer_id
    from renters

)

select * from selected
