with matched as (

    select * from {{ ref('int_click_hours_matched') }}
    where attribution_status = 'attributed'

),

rentals as (

    select * from {{ ref('stg_app__rentals') }}

),

bot_buckets as (

    select * from {{ ref('ivt_bot_buckets') }}

),

datacenter_asns as (

    select * from {{ ref('ivt_datacenter_asns') }}

),

-- The IVT policy judges a whole row (the rule lives in macros/ivt_policy.sql, shared with the
-- analysts' fct_clicks_hourly so both judge a click the same way).
policy_judged as (

    select
        matched.*,
        {{ ivt_policy_category('bot_buckets', 'datacenter_asns') }} as policy_ivt_category
    from matched
    left outer join bot_buckets
        on matched.bot_bucket = bot_buckets.bot_bucket
    left outer join datacenter_asns
        on matched.asn = datacenter_asns.asn

),

counted as (

    select
        policy_judged.click_row_key,
        policy_judged.click_hour,
        policy_judged.click_date,
        policy_judged.rental_id,
        rentals.route_id,
        rentals.renter_id,
        -- the system of record owns ownership; the Worker's copy is only a hint
        rentals.owner_id,
        policy_judged.bot_bucket,
        policy_judged.asn,
        policy_judged.device_class,
        policy_judged.policy_ivt_category,
        policy_judged.clicks,
        policy_judged.sampled_rows,
        policy_judged.max_sample_interval,
        -- a click flagged by the Worker and caught by the policy is still one invalid click
        case
            when policy_judged.policy_ivt_category is not null then policy_judged.clicks
            else least(policy_judged.worker_invalid_clicks, policy_judged.clicks)
        end as invalid_clicks,
        -- the Worker's flag comes from routine checks (known agents, rate limits): GIVT
        case
            when policy_judged.policy_ivt_category = 'GIVT' then policy_judged.clicks
            when policy_judged.policy_ivt_category is null
                then least(policy_judged.worker_invalid_clicks, policy_judged.clicks)
            else 0
        end as givt_clicks,
        case
            when policy_judged.policy_ivt_category = 'SIVT' then policy_judged.clicks
            else 0
        end as sivt_clicks
    from policy_judged
    inner join rentals
        on policy_judged.rental_id = rentals.rental_id

)

select * from counted
