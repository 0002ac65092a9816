-- Landed hours no rental claims: visible for analysis and reconciliation, never billed.
with matched as (

    select * from {{ ref('int_click_hours_matched') }}

),

unattributed as (

    select * from matched
    where attribution_status = 'unattributed'

)

select * from unattributed
