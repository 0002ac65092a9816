-- What the export sent to Stripe (loaders/export.py owns it). A row is written before the call
-- and updated after it, so a crash in between is visible and resolved on the next run.
create schema if not exists billing;

create table if not exists billing.meter_event_exports (
    identifier text primary key,
    booked_cycle date not null,
    rental_id text not null,
    click_date date not null,
    entry_kind text not null,
    stripe_customer_id text not null,
    event_name text not null,
    value bigint not null,
    event_timestamp timestamptz not null,
    revision integer not null default 0,
    status text not null check (status in ('pending', 'sent', 'failed')),
    attempts integer not null default 0,
    stripe_response jsonb,
    error text,
    created_at timestamptz not null default now(),
    sent_at timestamptz
);

create index if not exists meter_event_exports_cycle_idx
    on billing.meter_event_exports (booked_cycle);

-- Stripe's own view, pulled back after each export for reconciliation.
create table if not exists billing.stripe_event_summaries (
    stripe_customer_id text not null,
    meter_id text not null,
    event_name text not null,
    start_time timestamptz not null,
    end_time timestamptz not null,
    aggregated_value numeric not null,
    fetched_at timestamptz not null default now(),
    primary key (stripe_customer_id, meter_id, start_time, end_time)
);
