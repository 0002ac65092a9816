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
            {'columns': ['booked_cycle', 'checksum_version'], 'unique': true},
        ],
    )
}}

with entries as (

    select * from {{ ref('click_adjustments') }}

),

recorded as (

    {% if is_incremental() %}
        select
            booked_cycle,
            checksum_version,
            entries_checksum
        from {{ this }}
    {% else %}
        select
            null::date as booked_cycle,
            null::integer as checksum_version,
            null::text as entries_checksum
        where false
    {% endif %}

),

-- the cycle being run, even when it booked nothing, and any booked cycle without a record
-- (its build stopped between the ledger and this model)
cycles_to_record as (

    select {{ run_date_literal() }} as booked_cycle

    union

    select entries.booked_cycle
    from entries
    left outer join recorded
        on entries.booked_cycle = recorded.booked_cycle
    where recorded.booked_cycle is null

),

computed as (

    select
        cycles_to_record.booked_cycle,
        count(entries.rental_id) as entry_count,
        coalesce(sum(entries.valid_clicks_delta), 0) as valid_clicks_delta_sum,
        {{ ledger_entry_checksum('entries') }} as entries_checksum
    from cycles_to_record
    left outer join entries
        on cycles_to_record.booked_cycle = entries.booked_cycle
    group by cycles_to_record.booked_cycle

),

latest_recorded as (

    select distinct on (booked_cycle)
        booked_cycle,
        checksum_version,
        entries_checksum
    from recorded
    order by booked_cycle asc, checksum_version desc

),

newest_recorded as (

    select max(booked_cycle) as booked_cycle from recorded

),

new_versions as (

    select
        computed.booked_cycle::date as booked_cycle,
        (coalesce(latest_recorded.checksum_version, 0) + 1)::integer as checksum_version,
        computed.entry_count::bigint as entry_count,
        computed.valid_clicks_delta_sum::bigint as valid_clicks_delta_sum,
        computed.entries_checksum::text as entries_checksum,
        -- a replay re-books a cycle older than the newest one recorded
        coalesce(computed.booked_cycle < newest_recorded.booked_cycle, false) as is_replay,
        cast('{{ run_started_at.isoformat() }}' as timestamptz) as recorded_at,
        '{{ invocation_id }}'::text as invocation_id
    from computed
    cross join newest_recorded
    left outer join latest_recorded
        on computed.booked_cycle = latest_recorded.booked_cycle
    where latest_recorded.entries_checksum is distinct from computed.entries_checksum

)

select * from new_versions
