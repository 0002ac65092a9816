with loads as (

    select * from {{ source('ae', 'ae_loads') }}

),

renamed as (

    select
        load_id::text as load_id,
        dataset,
        slice_start,
        slice_end,
        status as load_status,
        click_rows,
        invalidation_rows,
        retries,
        started_at,
        finished_at,
        status = 'succeeded' as is_succeeded
    from loads

)

select * from renamed
