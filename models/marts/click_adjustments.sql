{#- full_refresh false: the ledger is the record of what was billed. A full refresh would
    rebuild it from today's click_rollups as one first booking per rental-day, erasing every
    adjustment Stripe already received, and the export would bill those days a second time.
    on_schema_change fail: a new column must be added deliberately, never filled with nulls
    for the cycles already booked. -#}
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        full_refresh=false,
        on_schema_change='fail',
        pre_hook="{{ ledger_delete_cycle('booked_cycle') }}",
        indexes=[
            {'columns': ['rental_id', 'click_date', 'booked_cycle'], 'unique': true},
            {'columns': ['booked_cycle']},
            {'columns': ['click_date']},
        ],
    )
}}

with rollups as (

    select * from {{ ref('click_rollups') }}
    where click_date <= {{ run_date_literal() }}

),

renters as (

    select * from {{ ref('stg_app__renters') }}

),

invalidations as (

    select * from {{ ref('int_invalidations_attributed') }}

),

-- every entry booked before this cycle; this cycle's own entries are being replaced
earlier_entries as (

    {% if is_incremental() %}
        select
            rental_id,
            click_date,
            booked_cycle,
            renter_id,
            route_id,
            owner_id,
            total_clicks_delta,
            invalid_clicks_delta,
            givt_clicks_delta,
            sivt_clicks_delta,
            late_invalidated_clicks_delta,
            valid_clicks_delta
        from {{ this }}
        where booked_cycle < {{ run_date_literal() }}
    {% else %}
        select
            null::text as rental_id,
            null::date as click_date,
            null::date as booked_cycle,
            null::text as renter_id,
            null::text as route_id,
            null::text as owner_id,
            null::bigint as total_clicks_delta,
            null::bigint as invalid_clicks_delta,
            null::bigint as givt_clicks_delta,
            null::bigint as sivt_clicks_delta,
            null::bigint as late_invalidated_clicks_delta,
            null::bigint as valid_clicks_delta
        where false
    {% endif %}

),

booked_so_far as (

    select
        rental_id,
        click_date,
        max(renter_id) as renter_id,
        max(route_id) as route_id,
        max(owner_id) as owner_id,
        sum(total_clicks_delta) as total_clicks,
        sum(invalid_clicks_delta) as invalid_clicks,
        sum(givt_clicks_delta) as givt_clicks,
        sum(sivt_clicks_delta) as sivt_clicks,
        sum(late_invalidated_clicks_delta) as late_invalidated_clicks,
        sum(valid_clicks_delta) as valid_clicks,
        max(booked_cycle) as last_booked_cycle
    from earlier_entries
    group by rental_id, click_date

),

-- a rental-day booked earlier but gone from the rollups is compared with zero, so its usage
-- is taken back rather than left standing
compared as (

    select
        booked_so_far.last_booked_cycle,
        coalesce(rollups.rental_id, booked_so_far.rental_id) as rental_id,
        coalesce(rollups.click_date, booked_so_far.click_date) as click_date,
        coalesce(rollups.route_id, booked_so_far.route_id) as route_id,
        coalesce(rollups.renter_id, booked_so_far.renter_id) as renter_id,
        coalesce(rollups.owner_id, booked_so_far.owner_id) as owner_id,
        coalesce(rollups.total_clicks, 0)
        - coalesce(booked_so_far.total_clicks, 0) as total_clicks_delta,
        coalesce(rollups.invalid_clicks, 0)
        - coalesce(booked_so_far.invalid_clicks, 0) as invalid_clicks_delta,
        coalesce(rollups.givt_clicks, 0)
        - coalesce(booked_so_far.givt_clicks, 0) as givt_clicks_delta,
        coalesce(rollups.sivt_clicks, 0)
        - coalesce(booked_so_far.sivt_clicks, 0) as sivt_clicks_delta,
        coalesce(rollups.late_invalidated_clicks, 0)
        - coalesce(booked_so_far.late_invalidated_clicks, 0) as late_invalidated_clicks_delta,
        coalesce(rollups.valid_clicks, 0)
        - coalesce(booked_so_far.valid_clicks, 0) as valid_clicks_delta,
        coalesce(rollups.is_estimated, false) as is_estimated,
        booked_so_far.rental_id is null as is_first_booking
    from rollups
    full outer join booked_so_far
        on
            rollups.rental_id = booked_so_far.rental_id
            and rollups.click_date = booked_so_far.click_date

),

-- no change, no entry: only rental-days whose usage or one of its components moved
changed as (

    select * from compared
    where
        total_clicks_delta <> 0
        or invalid_clicks_delta <> 0
        or givt_clicks_delta <> 0
        or sivt_clicks_delta <> 0
        or late_invalidated_clicks_delta <> 0

),

invalidation_codes as (

    select
        rental_id,
        original_click_date as click_date,
        written_hour,
        coalesce(ivt_category, 'IVT') || ':' || invalidation_reason as invalidation_code
    from invalidations

),

-- the invalidations a late-invalidation entry books: those written since the rental-day was
-- last booked (all of them for a first booking)
new_invalidation_codes as (

    select
        changed.rental_id,
        changed.click_date,
        string_agg(
            distinct invalidation_codes.invalidation_code, ','
            order by invalidation_codes.invalidation_code
        ) as invalidation_codes
    from changed
    inner join invalidation_codes
        on
            changed.rental_id = invalidation_codes.rental_id
            and changed.click_date = invalidation_codes.click_date
    where
        changed.late_invalidated_clicks_delta <> 0
        and (
            changed.last_booked_cycle is null
            or invalidation_codes.written_hour
            >= (changed.last_booked_cycle + 1)::timestamp at time zone 'utc'
        )
    group by changed.rental_id, changed.click_date

),

-- a replay can book an invalidation written after the window above; then every reason the
-- rental-day ever had is named rather than none
all_invalidation_codes as (

    select
        rental_id,
        click_date,
        string_agg(distinct invalidation_code, ',' order by invalidation_code) as invalidation_codes
    from invalidation_codes
    group by rental_id, click_date

),

classified as (

    select
        changed.*,
        coalesce(
            new_invalidation_codes.invalidation_codes,
            all_invalidation_codes.invalidation_codes,
            'IVT:unknown'
        ) as invalidation_codes,
        -- new clicks may bring invalid clicks of their own: only a move the new clicks cannot
        -- explain (outside 0 .. total delta, per category) is the policy judging old clicks anew
        not coalesce(
            changed.invalid_clicks_delta
            between least(0, changed.total_clicks_delta)
            and greatest(0, changed.total_clicks_delta)
            and changed.givt_clicks_delta
            between least(0, changed.total_clicks_delta)
            and greatest(0, changed.total_clicks_delta)
            and changed.sivt_clicks_delta
            between least(0, changed.total_clicks_delta)
            and greatest(0, changed.total_clicks_delta),
            false
        ) as is_policy_change
    from changed
    left outer join new_invalidation_codes
        on
            changed.rental_id = new_invalidation_codes.rental_id
            and changed.click_date = new_invalidation_codes.click_date
    left outer join all_invalidation_codes
        on
            changed.rental_id = all_invalidation_codes.rental_id
            and changed.click_date = all_invalidation_codes.click_date

),

-- reason: first_booking, or the '+'-joined causes of an adjustment in a fixed order;
-- reason_code: the ','-joined codes of those causes, in the same order
reasoned as (

    select
        classified.*,
        case
            when classified.is_first_booking then 'first_booking'
            else concat_ws(
                '+',
                case when classified.total_clicks_delta > 0 then 'late_clicks' end,
                case when classified.total_clicks_delta < 0 then 'click_restatement' end,
                case
                    when classified.late_invalidated_clicks_delta <> 0 then 'late_invalidation'
                end,
                case when classified.is_policy_change then 'ivt_policy_change' end
            )
        end as reason,
        nullif(concat_ws(
            ',',
            case
                when not classified.is_first_booking and classified.total_clicks_delta < 0
                    then case when classified.is_estimated then 'AE:estimate' else 'AE:restated' end
            end,
            case
                when classified.late_invalidated_clicks_delta <> 0
                    then classified.invalidation_codes
            end,
            case
                when not classified.is_first_booking and classified.is_policy_change
                    then coalesce(nullif(concat_ws(
                        ',',
                        case when classified.givt_clicks_delta <> 0 then 'GIVT' end,
                        case when classified.sivt_clicks_delta <> 0 then 'SIVT' end
                    ), ''), 'IVT')
            end
        ), '') as reason_code
    from classified

),

final as (

    select
        reasoned.rental_id::text as rental_id,
        reasoned.click_date::date as click_date,
        {{ run_date_literal() }} as booked_cycle,
        case when reasoned.is_first_booking then 'usage' else 'adjustment' end::text as entry_kind,
        reasoned.route_id::text as route_id,
        reasoned.renter_id::text as renter_id,
        reasoned.owner_id::text as owner_id,
        renters.stripe_customer_id::text as stripe_customer_id,
        reasoned.total_clicks_delta::bigint as total_clicks_delta,
        reasoned.invalid_clicks_delta::bigint as invalid_clicks_delta,
        reasoned.givt_clicks_delta::bigint as givt_clicks_delta,
        reasoned.sivt_clicks_delta::bigint as sivt_clicks_delta,
        reasoned.late_invalidated_clicks_delta::bigint as late_invalidated_clicks_delta,
        reasoned.valid_clicks_delta::bigint as valid_clicks_delta,
        reasoned.reason::text as reason,
        reasoned.reason_code::text as reason_code,
        reasoned.is_estimated::boolean as is_estimated,
        cast('{{ run_started_at.isoformat() }}' as timestamptz) as booked_at,
        '{{ invocation_id }}'::text as invocation_id
    from reasoned
    left outer join renters
        on reasoned.renter_id = renters.renter_id

)

select * from final
