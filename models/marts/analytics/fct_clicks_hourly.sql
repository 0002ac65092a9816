{#- Incremental, delete+insert by click_date over the days click_rollups reprocessed this cycle
    (rollup_touched_days), so every day the ledger may have changed is rebuilt here too and the
    two tie. The pre-hook empties those days first: a day that lost every landed row returns no
    row to the batch, and delete+insert alone would keep its stale rows. The measurement behind
    the choice is in docs/analytics.md. on_schema_change fail: the contract is what analysts
    query, so a new column is a deliberate full refresh. -#}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['click_date'],
        on_schema_change='fail',
        pre_hook=(
            "{% if is_incremental() %}delete from {{ this }} where click_date in"
            " (select touched.click_date from ({{ rollup_touched_days() }}) as touched)"
            "{% endif %}"
        ),
        indexes=[
            {'columns': ['click_hour']},
            {'columns': ['rental_id']},
            {'columns': ['click_date']},
        ],
    )
}}

-- the touched days come from click_rollups only on an incremental build, so dbt needs the hint
-- depends_on: {{ ref('click_rollups') }}

with attributed as (

    select * from {{ ref('int_click_hours_attributed') }}

),

unattributed as (

    select * from {{ ref('int_click_hours_unattributed') }}

),

click_hours as (

    select * from {{ ref('stg_ae__click_hours') }}

),

routes as (

    select * from {{ ref('stg_app__routes') }}

),

bot_buckets as (

    select * from {{ ref('ivt_bot_buckets') }}

),

datacenter_asns as (

    select * from {{ ref('ivt_datacenter_asns') }}

),

-- the days this cycle rebuilds: those click_rollups rebuilt, or every day on a first build
touched_days as (

    {% if is_incremental() %}
        {{ rollup_touched_days() }}
    {% else %}
        select distinct click_hours.click_date from click_hours
    {% endif %}

),

-- int_click_hours_attributed carries the counts and the judgement; country and referrer
-- come from the staged row it was attributed from
attributed_rows as (

    select
        attributed.click_hour,
        attributed.click_date,
        attributed.rental_id,
        attributed.route_id,
        attributed.renter_id,
        attributed.owner_id,
        click_hours.country,
        attributed.device_class,
        click_hours.referrer_domain,
        attributed.bot_bucket,
        attributed.asn,
        attributed.clicks,
        attributed.invalid_clicks,
        attributed.policy_ivt_category,
        attributed.sampled_rows,
        attributed.max_sample_interval
    from attributed
    inner join click_hours
        on attributed.click_row_key = click_hours.click_row_key

),

-- the same click-time policy as int_click_hours_attributed, for rows no rental claims
unattributed_judged as (

    select
        unattributed.*,
        {{ ivt_policy_category('bot_buckets', 'datacenter_asns') }} as policy_ivt_category
    from unattributed
    left outer join bot_buckets
        on unattributed.bot_bucket = bot_buckets.bot_bucket
    left outer join datacenter_asns
        on unattributed.asn = datacenter_asns.asn

),

unattributed_rows as (

    select
        unattributed_judged.click_hour,
        unattributed_judged.click_date,
        null::text as rental_id,
        unattributed_judged.route_id,
        unattributed_judged.renter_id,
        -- no rental names an owner: the route's owner in the system of record does
        routes.owner_id,
        unattributed_judged.country,
        unattributed_judged.device_class,
        unattributed_judged.referrer_domain,
        unattributed_judged.bot_bucket,
        unattributed_judged.asn,
        unattributed_judged.clicks,
        case
            when unattributed_judged.policy_ivt_category is not null
                then unattributed_judged.clicks
            else least(unattributed_judged.worker_invalid_clicks, unattributed_judged.clicks)
        end as invalid_clicks,
        unattributed_judged.policy_ivt_category,
        unattributed_judged.sampled_rows,
        unattributed_judged.max_sample_interval
    from unattributed_judged
    left outer join routes
        on unattributed_judged.route_id = routes.route_id

),

all_rows as (

    select * from attributed_rows
    union all
    select * from unattributed_rows

),

-- staged rows that differ only in what the Worker reported (named rental or not, owner hint)
-- fall into one row of this grain
hourly as (

    select
        all_rows.click_hour,
        all_rows.click_date,
        all_rows.rental_id,
        all_rows.route_id,
        all_rows.renter_id,
        all_rows.owner_id,
        all_rows.country,
        all_rows.device_class,
        all_rows.referrer_domain,
        all_rows.bot_bucket,
        all_rows.asn,
        sum(all_rows.clicks) as total_clicks,
        sum(all_rows.invalid_clicks) as invalid_clicks,
        -- bot bucket and ASN fix the policy's category within a row of this grain
        max(all_rows.policy_ivt_category) as policy_ivt_category,
        sum(all_rows.sampled_rows) as sampled_rows,
        max(all_rows.max_sample_interval) as max_sample_interval
    from all_rows
    inner join touched_days
        on all_rows.click_date = touched_days.click_date
    group by 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11

),

final as (

    select
        click_hour::timestamptz as click_hour,
        click_date::date as click_date,
        rental_id::text as rental_id,
        route_id::text as route_id,
        renter_id::text as renter_id,
        owner_id::text as owner_id,
        country::text as country,
        device_class::text as device_class,
        referrer_domain::text as referrer_domain,
        bot_bucket::text as bot_bucket,
        asn::text as asn,
        total_clicks::bigint as total_clicks,
        invalid_clicks::bigint as invalid_clicks,
        sampled_rows::bigint as sampled_rows,
        -- a click only the Worker flagged is GIVT, as in click_rollups
        (
            case
                when invalid_clicks > 0 then coalesce(policy_ivt_category, 'GIVT')
            end
        )::text as ivt_category,
        rental_id is not null as is_attributed,
        max_sample_interval > 1 as is_estimated
    from hourly

)

select * from final
