{#- md5 over the business columns of a set of ledger entries (the caller groups by cycle),
    in a fixed order. booked_at and invocation_id are left out so a rerun that books the same
    entries keeps the same checksum. An empty group (or a left join that found no entry) hashes the
    empty string. -#}
{% macro ledger_entry_checksum(relation_alias) -%}
    md5(coalesce(string_agg(
        concat_ws(
            '|',
            {{ relation_alias }}.rental_id,
            {{ relation_alias }}.click_date,
            {{ relation_alias }}.entry_kind,
            coalesce({{ relation_alias }}.stripe_customer_id, '-'),
            {{ relation_alias }}.total_clicks_delta,
            {{ relation_alias }}.invalid_clicks_delta,
            {{ relation_alias }}.givt_clicks_delta,
            {{ relation_alias }}.sivt_clicks_delta,
            {{ relation_alias }}.late_invalidated_clicks_delta,
            {{ relation_alias }}.valid_clicks_delta,
            {{ relation_alias }}.reason,
            coalesce({{ relation_alias }}.reason_code, '-'),
            {{ relation_alias }}.is_estimated
        ),
        ','
        order by {{ relation_alias }}.rental_id, {{ relation_alias }}.click_date
    ) filter (where {{ relation_alias }}.rental_id is not null), ''))
{%- endmacro %}
