with click_hours as (

    select * from {{ ref('stg_ae__click_hours') }}

),

rentals as (

    select * from {{ ref('stg_app__rentals') }}

),

-- A rental is a candidate for a landed hour when route and renter match and its
-- [starts_at, ends_at) overlaps [click_hour, click_hour + 1 hour).
candidates as (

    select
        click_hours.click_row_key,
        rentals.rental_id as candidate_rental_id,
        coalesce(click_hours.rental_id = rentals.rental_id, false) as is_named_rental
    from click_hours
    inner join rentals
        on
            click_hours.route_id = rentals.route_id
            and click_hours.renter_id = rentals.renter_id
            and click_hours.click_hour + interval '1 hour' > rentals.starts_at
            and (rentals.ends_at is null or click_hours.click_hour < rentals.ends_at)

),

candidates_per_row as (

    select
        click_row_key,
        count(*) as candidate_count,
        bool_or(is_named_rental) as names_a_candidate,
        min(candidate_rental_id) as first_candidate_rental_id
    from candidates
    group by click_row_key

),

classified as (

    select
        click_hours.*,
        candidates_per_row.first_candidate_rental_id,
        coalesce(candidates_per_row.candidate_count, 0) as candidate_count,
        case
            when candidates_per_row.candidate_count is null then 'unattributed'
            when click_hours.rental_id is not null and candidates_per_row.names_a_candidate
                then 'attributed'
            when click_hours.rental_id is not null then 'disagreement'
            when candidates_per_row.candidate_count = 1 then 'attributed'
            else 'ambiguous'
        end as attribution_status
    from click_hours
    left outer join candidates_per_row
        on click_hours.click_row_key = candidates_per_row.click_row_key

),

resolved as (

    select
        click_row_key,
        click_hour,
        click_date,
        route_id,
        renter_id,
        rental_id as reported_rental_id,
        reported_owner_id,
        country,
        asn,
        bot_bucket,
        referrer_domain,
        device_class,
        clicks,
        worker_invalid_clicks,
        sampled_rows,
        max_sample_interval,
        load_id,
        candidate_count,
        attribution_status,
        -- a named rental wins when it is a candidate; otherwise only a single candidate decides
        case
            when attribution_status = 'attributed'
                then coalesce(rental_id, first_candidate_rental_id)
        end as rental_id
    from classified

)

select * from resolved
