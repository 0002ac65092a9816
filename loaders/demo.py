"""`clicks demo` (`make demo`): the whole product on the local stack, in a few minutes.

It resets its own data, simulates a fortnight of traffic, runs the fourteen nightly cycles,
shows the ledger, Stripe and the reconciliation agreeing, then corrupts the system of record
(two overlapping rentals of one route), shows the gate refusing that cycle and repairs it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import TypeVar

from loaders import nightly, stack
from loaders.db import connect
from loaders.errors import TerminalError
from loaders.reset import reset
from loaders.settings import Settings, clicks_home

log = logging.getLogger(__name__)

DEMO_START = date(2026, 11, 1)
DEMO_DAYS = 14
T = TypeVar("T")


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    del name
    parser.add_argument("--rentals", type=int, default=200, help="rentals to simulate (200)")
    parser.add_argument("--seed", type=int, default=7, help="simulation seed (7)")
    parser.add_argument("--days", type=int, default=DEMO_DAYS, help="days to simulate (14)")


def run(args: argparse.Namespace) -> int:
    timings: list[tuple[str, float]] = []
    state = _timed(timings, "start the local stack", lambda: stack.up(clicks_home()))
    settings = _settings_from(state)
    _timed(timings, "reset demo data", lambda: reset(settings))
    truth = clicks_home() / "demo" / "truth.csv"
    result = _timed(timings, "simulate traffic", lambda: _simulate(settings, args, truth))
    last = DEMO_START + timedelta(days=args.days - 1)
    _banner(f"{args.days} nightly cycles, {DEMO_START} .. {last}")
    _timed(timings, "nightly cycles", lambda: _run_cycles(settings, state, DEMO_START, last))
    _timed(timings, "show the results", lambda: show_results(settings, state, result))
    _timed(timings, "gate demonstration", lambda: gate_demo(settings, state, last))
    _banner("where the time went")
    for name, seconds in timings:
        print(f"  {name:<24} {seconds:7.1f} s")
    print(f"  {'total':<24} {sum(seconds for _, seconds in timings):7.1f} s")
    return 0


def _timed(timings: list[tuple[str, float]], name: str, action: Callable[[], T]) -> T:
    started = time.monotonic()
    value = action()
    timings.append((name, time.monotonic() - started))
    return value


def _banner(title: str) -> None:
    print(f"\n== {title} " + "=" * max(0, 76 - len(title)))
    sys.stdout.flush()


def _settings_from(state: dict[str, str]) -> Settings:
    """Point this process (and the dbt it starts) at the stack just started, whatever the shell
    had exported."""
    for name in stack.ENV_NAMES:
        os.environ[name] = state[name]
    return Settings.load()


def _simulate(settings: Settings, args: argparse.Namespace, truth: Path) -> object:
    from loaders.simulate import simulate

    truth.parent.mkdir(parents=True, exist_ok=True)
    return simulate(
        settings,
        start=DEMO_START,
        days=args.days,
        rentals=args.rentals,
        seed=args.seed,
        truth_path=truth,
    )


def _run_cycles(settings: Settings, state: dict[str, str], first: date, last: date) -> None:
    reports = []
    with nightly.nightly_lock(settings):
        day = first
        while day <= last:
            reports.append(_cycle_at_its_time(settings, state, day))
            nightly.report.print_cycle_table(reports)
            if reports[-1].exit_code:
                raise TerminalError(f"demo cycle {day} did not pass: {reports[-1].error}")
            day += timedelta(days=1)


def _cycle_at_its_time(settings: Settings, state: dict[str, str], cycle: date):
    """Run a cycle as its night would: Stripe's clock set to 02:00 UTC the day after."""
    from loaders.emulators import stripe_admin

    night = datetime.combine(cycle + timedelta(days=1), dtime(2, 0), tzinfo=UTC)
    stripe_admin.set_clock(state["_stripe_base"], night)
    return nightly.run_cycle(settings, cycle)


def show_results(settings: Settings, state: dict[str, str], result: object) -> None:
    from loaders.emulators import stripe_admin

    with connect(settings, autocommit=True) as conn:
        _banner("ledger: what each cycle booked")
        _print_rows(
            conn.execute(LEDGER_BY_CYCLE).fetchall(),
            ("booked_cycle", "usage", "usage_clicks", "adjustments", "adjusted_clicks"),
        )
        _banner("adjustments by reason (late invalidations are booked in later cycles)")
        _print_rows(
            conn.execute(ADJUSTMENTS_BY_REASON).fetchall(),
            ("reason", "reason_code", "entries", "clicks"),
        )
        ledger = dict(conn.execute(LEDGER_BY_CUSTOMER).fetchall())
        recon = conn.execute(RECONCILIATION_STATUS).fetchall()
    stripe_totals: dict[str, int] = {}
    for event in stripe_admin.list_events(state["_stripe_base"]):
        customer = event["payload"]["stripe_customer_id"]
        stripe_totals[customer] = stripe_totals.get(customer, 0) + int(event["payload"]["value"])
    expected = getattr(result, "expected_valid_by_customer", {}) or {}
    _banner("Stripe vs ledger vs simulator truth, per customer")
    _compare_customers(ledger, stripe_totals, expected)
    _banner("reconciliation_daily: status per cycle")
    _print_rows(recon, ("status", "rows"))


def _compare_customers(ledger: dict, stripe_totals: dict, expected: dict) -> None:
    customers = sorted(set(ledger) | set(stripe_totals) | set(expected))
    equal = [
        c
        for c in customers
        if ledger.get(c, 0) == stripe_totals.get(c, 0) == expected.get(c, ledger.get(c, 0))
    ]
    rows = [
        (c, ledger.get(c, 0), stripe_totals.get(c, 0), expected.get(c, "-")) for c in customers[:5]
    ]
    _print_rows(rows, ("customer", "ledger", "stripe", "truth"))
    print(f"  {len(equal)} of {len(customers)} customers agree across ledger, Stripe and truth")
    if len(equal) != len(customers):
        raise TerminalError("Stripe, the ledger and the simulator disagree: see the table above")


def gate_demo(settings: Settings, state: dict[str, str], last: date) -> None:
    cycle = last + timedelta(days=1)
    _banner(f"bad input: two overlapping rentals of one route, cycle {cycle}")
    with connect(settings, autocommit=True) as conn:
        rental = conn.execute(INSERT_OVERLAP).fetchone()
    if rental is None:
        raise TerminalError("found no open-ended rental to overlap; the simulation changed?")
    print(f"  inserted rental {rental[0]} on route {rental[1]}, overlapping {rental[2]}")
    refused = _cycle_at_its_time(settings, state, cycle)
    print(f"  cycle {cycle}: {refused.outcome}, exit code {refused.exit_code}")
    print(f"  the gate said: {refused.error}")
    if refused.exit_code != 3:
        raise TerminalError(f"the gate did not refuse cycle {cycle} (exit {refused.exit_code})")
    _banner(f"repair: delete {rental[0]} and rerun cycle {cycle}")
    with connect(settings, autocommit=True) as conn:
        conn.execute("delete from app.rentals where rental_id = %s", (rental[0],))
    repaired = _cycle_at_its_time(settings, state, cycle)
    print(f"  cycle {cycle}: {repaired.outcome}, exit code {repaired.exit_code}")
    if repaired.exit_code != 0:
        raise TerminalError(f"cycle {cycle} still fails after the repair: {repaired.error}")


def _print_rows(rows: list[tuple], columns: tuple[str, ...]) -> None:
    widths = [
        max(len(str(v)) for v in (column, *(row[i] for row in rows)))
        for i, column in enumerate(columns)
    ]
    print("  " + "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in rows:
        print("  " + "  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)))


LEDGER_BY_CYCLE = """
select booked_cycle,
       count(*) filter (where entry_kind = 'usage'),
       coalesce(sum(valid_clicks_delta) filter (where entry_kind = 'usage'), 0),
       count(*) filter (where entry_kind = 'adjustment'),
       coalesce(sum(valid_clicks_delta) filter (where entry_kind = 'adjustment'), 0)
from marts.click_adjustments group by booked_cycle order by booked_cycle
"""

ADJUSTMENTS_BY_REASON = """
select reason, coalesce(reason_code, ''), count(*), sum(valid_clicks_delta)
from marts.click_adjustments where entry_kind = 'adjustment'
group by 1, 2 order by 1, 2
"""

LEDGER_BY_CUSTOMER = """
select stripe_customer_id, sum(valid_clicks_delta)::bigint
from marts.click_adjustments group by 1
"""

RECONCILIATION_STATUS = """
select status, count(*) from marts.reconciliation_daily group by 1 order by 1
"""

# Another renter's rental on a route that is already rented open-ended: the bad input the
# overlapping-rentals test exists for.
INSERT_OVERLAP = """
with target as (
    select rentals.rental_id, rentals.route_id, rentals.owner_id, rentals.starts_at,
           rentals.renter_id
    from app.rentals as rentals
    where rentals.ends_at is null
    order by rentals.rental_id
    limit 1
),
other_renter as (
    select renters.renter_id
    from app.renters as renters
    inner join target on renters.renter_id <> target.renter_id
    order by renters.renter_id
    limit 1
)
insert into app.rentals (rental_id, route_id, renter_id, owner_id, starts_at, ends_at, status)
select 'demo_overlap', target.route_id, other_renter.renter_id, target.owner_id,
       target.starts_at + interval '1 day', null, 'active'
from target cross join other_renter
returning rental_id, route_id, (select rental_id from target)
"""
