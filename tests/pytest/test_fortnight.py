"""A simulated fortnight through every nightly cycle, checked against the simulator's truth.

Given fourteen days of traffic with late invalidations and sampled heavy hitters, when the
nightly cycles run one by one (load, dbt build with every data and unit test, gate, export,
reconcile) with Stripe's clock at each cycle's night, then after every cycle the rollups and the
ledger equal the truth the simulator computed on its own, and Stripe holds exactly the ledger.
This is the suite's dbt run: every cycle's `dbt build` runs all schema, data and unit tests.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta

import psycopg
import pytest

from loaders import nightly
from loaders.emulators import stripe_admin
from loaders.simulate import simulate

pytestmark = pytest.mark.fortnight

START = date(2026, 11, 1)
DAYS = 14


# Everything an entry says, less when and by which dbt invocation it was (re)booked.
LEDGER_HASH = """
select md5(string_agg(concat_ws(',', rental_id, click_date, booked_cycle, entry_kind,
    total_clicks_delta, invalid_clicks_delta, late_invalidated_clicks_delta, valid_clicks_delta,
    reason, reason_code), '|' order by rental_id, click_date, booked_cycle))
from marts.click_adjustments
"""


def ledger_through(conn: psycopg.Connection, cycle: date) -> dict[tuple[str, date], int]:
    rows = conn.execute(
        "select rental_id, click_date, sum(valid_clicks_delta) from marts.click_adjustments"
        " where booked_cycle <= %s group by 1, 2",
        (cycle,),
    ).fetchall()
    return {(rental, day): int(total) for rental, day, total in rows if total != 0}


def rollups(conn: psycopg.Connection) -> dict[tuple[str, date], tuple[int, int, int, bool]]:
    rows = conn.execute(
        "select rental_id, click_date, total_clicks, invalid_clicks, late_invalidated_clicks,"
        " is_estimated from marts.click_rollups where total_clicks > 0"
    ).fetchall()
    return {(row[0], row[1]): (row[2], row[3], row[4], row[5]) for row in rows}


def stripe_by_customer(base: str) -> dict[str, int]:
    totals: dict[str, int] = defaultdict(int)
    for event in stripe_admin.list_events(base):
        totals[event["payload"]["stripe_customer_id"]] += int(event["payload"]["value"])
    return {customer: value for customer, value in totals.items() if value}


def run_at_night(settings, stack_env, cycle: date) -> nightly.CycleReport:
    night = datetime.combine(cycle + timedelta(days=1), time(2, 0), tzinfo=UTC)
    stripe_admin.set_clock(stack_env["_stripe_base"], night)
    return nightly.run_cycle(settings, cycle)


def test_every_cycle_of_a_fortnight_matches_the_simulators_truth(
    fresh_db, stack_env, ae_reset, stripe_reset
):
    # given a fortnight of traffic with late invalidations and sampled heavy hitters
    result = simulate(fresh_db, start=START, days=DAYS, rentals=16, seed=21, clicks_per_day=1500)
    truth = defaultdict(dict)
    for row in result.truth_rows:
        truth[row.cycle_date][(row.rental_id, row.click_date)] = row
    assert result.invalidation_points > 0
    assert any(row.is_estimated for row in result.truth_rows)

    adjustment_cycles = set()
    for offset in range(DAYS):
        cycle = START + timedelta(days=offset)

        # when the cycle runs as its night would
        report = run_at_night(fresh_db, stack_env, cycle)

        # then it passes, and rollups, ledger and Stripe all equal the truth as of that cycle
        assert (report.outcome, report.exit_code) == ("succeeded", 0), report.error
        expected = truth[cycle]
        with psycopg.connect(fresh_db.database_url) as conn:
            assert rollups(conn) == {
                key: (row.total_clicks, row.invalid_clicks, row.late_invalidated_clicks,
                      row.is_estimated)
                for key, row in expected.items()
            }  # fmt: skip
            assert ledger_through(conn, cycle) == {
                key: row.valid_clicks for key, row in expected.items() if row.valid_clicks
            }
            # after the export and the reconcile step, every row of the cycle reconciles
            statuses = conn.execute(
                "select status, count(*) from marts.reconciliation_daily where run_date = %s"
                " group by status",
                (cycle,),
            ).fetchall()
            assert dict(statuses).keys() == {"ok"}, statuses
            per_rental = conn.execute(
                "select status, count(*) from marts.reconciliation_rentals where run_date = %s"
                " group by status",
                (cycle,),
            ).fetchall()
            assert dict(per_rental).keys() <= {"ok"}, per_rental
            adjustments = conn.execute(
                "select count(*) from marts.click_adjustments"
                " where booked_cycle = %s and entry_kind = 'adjustment'",
                (cycle,),
            ).fetchone()[0]
        if adjustments:
            adjustment_cycles.add(cycle)
        by_customer: dict[str, int] = defaultdict(int)
        for row in expected.values():
            by_customer[row.stripe_customer_id] += row.valid_clicks
        assert stripe_by_customer(stack_env["_stripe_base"]) == {
            customer: value for customer, value in by_customer.items() if value
        }

    # and late invalidations showed up as adjustments in later cycles, not as rewritten history
    assert adjustment_cycles and min(adjustment_cycles) > START
    assert stripe_by_customer(stack_env["_stripe_base"]) == {
        customer: value for customer, value in result.expected_valid_by_customer.items() if value
    }

    # and rerunning the last cycle books and sends nothing new
    last = START + timedelta(days=DAYS - 1)
    with psycopg.connect(fresh_db.database_url) as conn:
        before = conn.execute(LEDGER_HASH).fetchone()[0]
    events_before = len(stripe_admin.list_events(stack_env["_stripe_base"]))
    assert run_at_night(fresh_db, stack_env, last).exit_code == 0
    with psycopg.connect(fresh_db.database_url) as conn:
        after = conn.execute(LEDGER_HASH).fetchone()[0]
    assert after == before
    assert len(stripe_admin.list_events(stack_env["_stripe_base"])) == events_before
