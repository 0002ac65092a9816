-- Landed hours the attribution refuses to decide: the Worker named a rental that is not a
-- candidate (disagreement), or an older Worker's row matches several rentals (ambiguous).
-- Any row here fails a data test, which blocks the billing export until someone looks.
with matched as (

    select * from {{ ref('int_click_hours_matched') }}

),

rejected as (

    select * from matched
    where attribution_status in ('disagreement', 'ambiguous')

)

select * from rejected
