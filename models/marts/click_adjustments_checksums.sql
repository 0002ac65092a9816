{#- full_refresh false: this is the evidence that booked cycles never changed; rebuilding it
    would recompute today's checksums and hide any change it exists to reveal.
    Append-only: a cycle gets a new version only when its entries differ from its latest
    recorded version (a rerun of the newest cycle with new data, or a replay). -#}
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        full_refresh=false,
        on_schema_change='fail',
        indexes=[
            {'columns': ['booked_cycle', 'version'], 'unique': true},
        ],
    )
}}

with entries as (

    select * from {{ ref('click_adjustments') }}

),

{% if is_incremental() %}

recorded as (

    select * from {{ this }}

),

{% else %}

recorded as (

    select
        null::date as booked_cycle,
        null::integer as version,
        null::text as checksum
    where false

),

{% endif %}

-- the cycle being run, even when it booked nothing, and any booked cycle without a record
-- (its build stopped between the ledger and this model)
cycles_to_record as (

    select {{ run_date_literal() }} as booked_cycle

    union

    select entries.booked_cycle
    from entries
    left join recorded
        on entries.booked_cycle = recorded.booked_cycle
    where recorded.booked_cycle is null

),

computed as (

    select
        cycles_to_record.booked_cycle,
        count(entries.rental_id) as entry_count,
        coalesce(sum(entries.valid_clicks_delta), 0) as valid_clicks_delta_sum,
        {{ ledger_entry_checksum('entries') }} as checksum
    from cycles_to_record
    left join entries
        on cycles_to_record.booked_cycle = entries.booked_cycle
    group by cycles_to_record.booked_cycle

),

latest_recorded as (

    select distinct on (booked_cycle)
        booked_cycle,
        version,
        checksum
    from recorded
    order by booked_cycle asc, version desc

),

newest_recorded as (

    select max(booked_cycle) as booked_cycle from recorded

),

new_versions as (

    select
        computed.booked_cycle::date as booked_cycle,
        (coalesce(latest_recorded.version, 0) + 1)::integer as version,
        computed.entry_count::bigint as entry_count,
        computed.valid_clicks_delta_sum::bigint as valid_clicks_delta_sum,
        computed.checksum::text as checksum,
        -- a replay re-books a cycle older than the newest one recorded
        coalesce(computed.booked_cycle < newest_recorded.booked_cycle, false) as is_replay,
        cast('{{ run_started_at.isoformat() }}' as timestamptz) as recorded_at,
        '{{ invocation_id }}'::text as invocation_id
    from computed
    cross join newest_recorded
    left join latest_recorded
        on computed.booked_cycle = latest_recorded.booked_cycle
    where latest_recorded.checksum is distinct from computed.checksum

)

select * from new_versions
