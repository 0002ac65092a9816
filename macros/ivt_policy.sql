{#- The click-time IVT policy, in one place: the category a row's clicks get from the policy
    seeds, joined as `bot_buckets` (ivt_bot_buckets) and `datacenter_asns` (ivt_datacenter_asns).
    A bot bucket marked invalid or a data-centre ASN makes every click of the row invalid. GIVT
    wins over SIVT when both apply, because the list-based (general) filter is the one that
    catches the click first. Null: the policy finds nothing wrong with the row. -#}
{% macro ivt_policy_category(bot_buckets, datacenter_asns) -%}
    case
        when {{ bot_buckets }}.ivt_category = 'GIVT' and {{ bot_buckets }}.is_invalid then 'GIVT'
        when {{ datacenter_asns }}.ivt_category = 'GIVT' then 'GIVT'
        when {{ bot_buckets }}.ivt_category = 'SIVT' and {{ bot_buckets }}.is_invalid then 'SIVT'
        when {{ datacenter_asns }}.ivt_category = 'SIVT' then 'SIVT'
    end
{%- endmacro %}
