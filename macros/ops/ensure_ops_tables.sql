{#- Creates the ops tables the run-result hooks write, when the Python side (loaders/sql/ops.sql)
    has not run on this database: dbt alone must be able to record its results. The columns are
    exactly those of loaders/sql/ops.sql, which stays the owner of the definition. -#}
{% macro ensure_ops_tables() %}
    create schema if not exists ops;

    create table if not exists ops.dbt_invocations (
        invocation_id text primary key,
        run_date date not null,
        command text not null,
        target_name text,
        dbt_version text,
        started_at timestamptz not null,
        finished_at timestamptz not null default now(),
        success boolean not null
    );

    create table if not exists ops.dbt_node_results (
        invocation_id text not null,
        run_date date not null,
        unique_id text not null,
        resource_type text not null,
        status text not null,
        failures bigint,
        message text,
        execution_time double precision,
        blocks_export boolean not null default false,
        primary key (invocation_id, unique_id)
    );
{% endmacro %}
