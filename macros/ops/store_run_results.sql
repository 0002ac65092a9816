{#- on-run-end: records the invocation and one row per result in ops.*, for the billing gate
    (loaders/gate.py). Only build, run and test are recorded: those are the commands whose
    results say whether a cycle may be billed. -#}
{% macro store_run_results(results) %}
    {%- if not execute or flags.WHICH not in ['build', 'run', 'test'] -%}
        select 1
    {%- else -%}
        {%- set blocking = ops_export_lineage() -%}
        {%- set ns = namespace(success=true) -%}
        {%- for result in results -%}
            {%- if (result.status | string) not in ops_ok_statuses() -%}
                {%- set ns.success = false -%}
            {%- endif -%}
        {%- endfor -%}

        insert into ops.dbt_invocations (
            invocation_id, run_date, command, target_name, dbt_version, started_at, success
        )
        values (
            {{ ops_literal(invocation_id) }},
            {{ run_date_literal() }},
            {{ ops_literal(flags.WHICH) }},
            {{ ops_literal(target.name) }},
            {{ ops_literal(dbt_version) }},
            cast({{ ops_literal(run_started_at.isoformat()) }} as timestamptz),
            {{ ns.success }}
        )
        on conflict (invocation_id) do nothing;

        {%- if results | length > 0 %}

        insert into ops.dbt_node_results (
            invocation_id, run_date, unique_id, resource_type, status, failures, message,
            execution_time, blocks_export
        )
        values
        {%- for result in results %}
            (
                {{ ops_literal(invocation_id) }},
                {{ run_date_literal() }},
                {{ ops_literal(result.node.unique_id) }},
                {{ ops_literal(result.node.resource_type) }},
                {{ ops_literal(result.status) }},
                {{ result.failures if result.failures is number else 'null' }},
                {{ ops_literal(result.message) }},
                {{ result.execution_time if result.execution_time is number else 'null' }},
                {{ ops_blocks_export(result.node, blocking) }}
            ){{ ',' if not loop.last }}
        {%- endfor %}
        on conflict (invocation_id, unique_id) do nothing;
        {%- endif -%}
    {%- endif -%}
{% endmacro %}

{#- Statuses that do not stop billing: a warn-severity test (the retention guard) reports
    without blocking, and an exposure has nothing to run (no-op). Skipped, error and fail do. -#}
{% macro ops_ok_statuses() -%}
    {{ return(['success', 'pass', 'warn', 'no-op']) }}
{%- endmacro %}

{#- A SQL string literal, or null. Single quotes are doubled, which is all Postgres needs with
    standard_conforming_strings on (its default): backslashes stay literal. -#}
{% macro ops_literal(value) -%}
    {%- if value is none -%}
        null
    {%- else -%}
        '{{ value | string | replace("'", "''") }}'
    {%- endif -%}
{%- endmacro %}

{#- billing_export and every node it depends on, directly or not: the unique ids whose failure
    keeps the export from running. Walks depends_on one generation per pass; the number of passes
    is bounded by the number of nodes, which no lineage can exceed. -#}
{% macro ops_export_lineage() -%}
    {%- set lineage = [] -%}
    {%- for node in graph.nodes.values()
        if node.resource_type == 'model' and node.name == 'billing_export' -%}
        {%- do lineage.append(node.unique_id) -%}
    {%- endfor -%}
    {%- set ns = namespace(frontier=lineage[:]) -%}
    {%- for _ in range(graph.nodes | length) if ns.frontier | length > 0 -%}
        {%- set parents = [] -%}
        {%- for unique_id in ns.frontier -%}
            {%- set node = graph.nodes.get(unique_id) -%}
            {%- if node is not none -%}
                {%- for parent in node.depends_on.nodes
                    if parent not in lineage and parent not in parents -%}
                    {%- do parents.append(parent) -%}
                {%- endfor -%}
            {%- endif -%}
        {%- endfor -%}
        {%- do lineage.extend(parents) -%}
        {%- set ns.frontier = parents -%}
    {%- endfor -%}
    {{ return(lineage) }}
{%- endmacro %}

{#- true when the node is in the export's lineage, or is a test (data or unit) of a node that
    is: tests attach to the models they read, and a failing one makes dbt build skip the
    export. -#}
{% macro ops_blocks_export(node, lineage) -%}
    {%- set ns = namespace(blocks=node.unique_id in lineage) -%}
    {%- if node.resource_type in ['test', 'unit_test'] -%}
        {%- for parent in node.depends_on.nodes if parent in lineage -%}
            {%- set ns.blocks = true -%}
        {%- endfor -%}
    {%- endif -%}
    {{ return(ns.blocks) }}
{%- endmacro %}
