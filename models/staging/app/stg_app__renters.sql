with renters as (

    select * from {{ source('app', 'renters') }}

),

renamed as (

    select
        renter_id,
        name as renter_name,
        nullif(stripe_customer_id, '') as stripe_customer_id
    from renters

)

select * from renamed
