-- Landing tables of the AE loader (loaders/landing.py owns them; dbt reads them as a source).
-- A slice landed again replaces the rows of its time range in one transaction, so these tables
-- always hold exactly one landing of every hour; ae_loads keeps the history of every attempt.
create schema if not exists raw;

create table if not exists raw.ae_loads (
    load_id uuid primary key,
    dataset text not null,
    slice_start timestamptz not null,
    slice_end timestamptz not null,
    status text not null check (status in ('running', 'succeeded', 'failed')),
    query_hash text not null,
    ae_query_ids text[] not null default '{}',
    click_rows bigint,
    invalidation_rows bigint,
    retries integer not null default 0,
    error text,
    started_at timestamptz not null default now(),
    finished_at timestamptz,
    check (slice_end > slice_start)
);

create index if not exists ae_loads_slice_idx on raw.ae_loads (slice_start, slice_end);

-- One row per click hour and every contract dimension; counts are sampling-corrected.
create table if not exists raw.ae_clicks_hourly (
    load_id uuid not null,
    slice_start timestamptz not null,
    slice_end timestamptz not null,
    click_hour timestamptz not null,
    route_id text not null,
    renter_id text not null,
    rental_id text not null,
    owner_id text not null,
    country text not null,
    asn text not null,
    bot_bucket text not null,
    referrer_domain text not null,
    device_class text not null,
    clicks bigint not null check (clicks >= 0),
    invalid_clicks bigint not null check (invalid_clicks >= 0),
    sampled_rows bigint not null check (sampled_rows > 0),
    max_sample_interval bigint not null check (max_sample_interval >= 1),
    loaded_at timestamptz not null default now()
);

create index if not exists ae_clicks_hourly_hour_idx on raw.ae_clicks_hourly (click_hour);

-- Late invalidations: landed by the hour they were written, keyed by the hour they concern.
create table if not exists raw.ae_invalidations_hourly (
    load_id uuid not null,
    slice_start timestamptz not null,
    slice_end timestamptz not null,
    written_hour timestamptz not null,
    original_click_hour timestamptz not null,
    route_id text not null,
    renter_id text not null,
    rental_id text not null,
    owner_id text not null,
    invalidation_reason text not null,
    invalidated_clicks bigint not null check (invalidated_clicks >= 0),
    sampled_rows bigint not null check (sampled_rows > 0),
    max_sample_interval bigint not null check (max_sample_interval >= 1),
    loaded_at timestamptz not null default now()
);

create index if not exists ae_invalidations_hourly_written_idx
    on raw.ae_invalidations_hourly (written_hour);
