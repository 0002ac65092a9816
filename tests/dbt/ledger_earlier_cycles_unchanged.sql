-- Asserts: the entries of every cycle booked before run_date still hash to the latest checksum
-- recorded for that cycle in click_adjustments_checksums. A returned row is an earlier cycle
-- whose entries changed after they were booked (and possibly billed).
with entries as (

    select * from {{ ref('click_adjustments') }}
    where booked_cycle < {{ run_date_literal() }}

),

recorded as (

    select * from {{ ref('click_adjustments_checksums') }}
    where booked_cycle < {{ run_date_literal() }}

),

latest_recorded as (

    select distinct on (booked_cycle)
        booked_cycle,
        checksum_version,
        entries_checksum
    from recorded
    order by booked_cycle asc, checksum_version desc

),

cycles as (

    select booked_cycle from latest_recorded
    union
    select booked_cycle from entries

),

recomputed as (

    select
        cycles.booked_cycle,
        {{ ledger_entry_checksum('entries') }} as entries_checksum
    from cycles
    left outer join entries
        on cycles.booked_cycle = entries.booked_cycle
    group by cycles.booked_cycle

)

select
    recomputed.booked_cycle,
    latest_recorded.checksum_version,
    latest_recorded.entries_checksum as recorded_checksum,
    recomputed.entries_checksum as current_checksum
from recomputed
left outer join latest_recorded
    on recomputed.booked_cycle = latest_recorded.booked_cycle
where recomputed.entries_checksum is distinct from latest_recorded.entries_checksum
