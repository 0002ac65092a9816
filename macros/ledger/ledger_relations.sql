{#- The relation a model of this project builds, found through the graph so the schema and alias
    come from the project's config (generate_schema_name) rather than a second hard-coded copy.
    Returns none when the model is not in the project or not yet built. -#}
{% macro ledger_built_relation(model_name) -%}
    {%- for node in graph.nodes.values()
        if node.resource_type == 'model' and node.name == model_name -%}
        {{ return(adapter.get_relation(
            database=node.database, schema=node.schema, identifier=node.alias
        )) }}
    {%- endfor -%}
    {{ return(none) }}
{%- endmacro %}

{#- The newest cycle the ledger has booked, as 'YYYY-MM-DD', or none before the first booking.
    The checksum record lists every booked cycle, including cycles that booked no entry; the
    ledger itself is read too, in case a build stopped between the two. -#}
{% macro ledger_newest_booked_cycle() -%}
    {%- set newest = none -%}
    {%- set found = [] -%}
    {%- for model_name in ['click_adjustments', 'click_adjustments_checksums'] -%}
        {%- set relation = ledger_built_relation(model_name) -%}
        {%- if relation is not none -%}
            {%- set result = run_query(
                "select max(booked_cycle)::text as newest from " ~ relation
            ) -%}
            {%- set value = result.columns[0].values()[0] -%}
            {%- if value is not none -%}
                {%- do found.append(value | string) -%}
            {%- endif -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(found | max if found else none) }}
{%- endmacro %}
