-- Operational records: nightly runs, dbt results per invocation, and billing gate decisions.
create schema if not exists ops;

create table if not exists ops.nightly_runs (
    run_id uuid primary key,
    cycle_date date not null,
    started_at timestamptz not null default now(),
    finished_at timestamptz,
    outcome text not null check (outcome in ('running', 'succeeded', 'refused', 'failed')),
    exit_code integer,
    steps jsonb not null default '[]',
    error text
);

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
    -- true for a data test or model upstream of billing_export: its failure blocks the export
    blocks_export boolean not null default false,
    primary key (invocation_id, unique_id)
);

create table if not exists ops.export_gate_decisions (
    decided_at timestamptz not null default now(),
    cycle_date date not null,
    invocation_id text,
    allowed boolean not null,
    failing_tests text[] not null default '{}',
    reason text not null
);
