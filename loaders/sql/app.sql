-- The system of record, as Neon holds it. dbt reads these tables as a source and never writes
-- them; the simulator fills them locally. Times are timestamptz; ends_at null = open-ended.
create schema if not exists app;

create table if not exists app.routes (
    route_id text primary key,
    owner_id text not null,
    host text not null,
    path text not null,
    created_at timestamptz not null default now()
);

create table if not exists app.renters (
    renter_id text primary key,
    name text not null,
    stripe_customer_id text
);

create table if not exists app.rentals (
    rental_id text primary key,
    route_id text not null references app.routes (route_id),
    renter_id text not null references app.renters (renter_id),
    owner_id text not null,
    starts_at timestamptz not null,
    ends_at timestamptz,
    status text not null default 'active',
    check (ends_at is null or ends_at > starts_at)
);

create index if not exists rentals_route_idx on app.rentals (route_id, starts_at);
