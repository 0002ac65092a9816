with invalidation_hours as (

    select * from {{ ref('stg_ae__invalidation_hours') }}

),

rentals as (

    select * from {{ ref('stg_app__rentals') }}

),

-- An invalidation is attributed like the clicks it takes away: by the hour it concerns.
candidates as (

    select
        invalidation_hours.invalidation_row_key,
        rentals.rental_id as candidate_rental_id,
        coalesce(invalidation_hours.rental_id = rentals.rental_id, false) as is_named_rental
    from invalidation_hours
    inner join rentals
        on
            invalidation_hours.route_id = rentals.route_id
            and invalidation_hours.renter_id = rentals.renter_id
            and invalidation_hours.original_click_hour + interval '1 hour' > rentals.starts_at
            and (
                rentals.ends_at is null
                or invalidation_hours.original_click_hour < rentals.ends_at
            )

),

candidates_per_row as (

    select
        invalidation_row_key,
        count(*) as candidate_count,
        bool_or(is_named_rental) as names_a_candidate,
        min(candidate_rental_id) as first_candidate_rental_id
    from candidates
    group by invalidation_row_key

),

classified as (

    select
        invalidation_hours.*,
        candidates_per_row.first_candidate_rental_id,
        coalesce(candidates_per_row.candidate_count, 0) as candidate_count,
        case
            when candidates_per_row.candidate_count is null then 'unattributed'
            when invalidation_hours.rental_id is not null and candidates_per_row.names_a_candidate
                then 'attributed'
            when invalidation_hours.rental_id is not null then 'disagreement'
            when candidates_per_row.candidate_count = 1 then 'attributed'
            else 'ambiguous'
        end as attribution_status
    from invalidation_hours
    left outer join candidates_per_row
        on invalidation_hours.invalidation_row_key = candidates_per_row.invalidation_row_key

),

resolved as (

    select
        invalidation_row_key,
        written_hour,
        original_click_hour,
        original_click_date,
        route_id,
        renter_id,
        rental_id as reported_rental_id,
        reported_owner_id,
        invalidation_reason,
        invalidated_clicks,
        sampled_rows,
        max_sample_interval,
        load_id,
        candidate_count,
        attribution_status,
        case
            when attribution_status = 'attributed'
                then coalesce(rental_id, first_candidate_rental_id)
        end as rental_id
    from classified

)

select * from resolved
