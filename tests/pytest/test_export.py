"""`clicks export` sends each booked amount to Stripe once, and only after the gate allows it.

Each test gets an empty database (``fresh_db``) holding a hand-made ``marts.billing_export`` and
hand-made dbt results in ``ops.*``, and an empty Stripe emulator frozen just after the cycle.
Expected totals are computed here from the ledger rows, independently of the export.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta

import httpx
import psycopg
import pytest

from loaders import cli, gate
from loaders.emulators import stripe_admin
from loaders.errors import GateRefusedError
from loaders.export import export_cycle, identifier_for

# The SDK hands httpx its form body as text, which httpx 0.29 flags as deprecated.
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")

CYCLE = date(2026, 11, 14)
AFTER_CYCLE = datetime(2026, 11, 15, 1, 0, tzinfo=UTC)

LEDGER_DDL = """
create schema if not exists marts;
create table marts.billing_export (
    booked_cycle date, rental_id text, click_date date, entry_kind text,
    stripe_customer_id text, value bigint, event_timestamp timestamptz, reason text
)
"""

# (rental, customer, click_date, kind, value): cycle 2026-11-14's ledger entries
LEDGER = [
    ("r1", "cus_Alpha", date(2026, 11, 12), "adjustment", -3),
    ("r1", "cus_Alpha", date(2026, 11, 14), "usage", 120),
    ("r2", "cus_Alpha", date(2026, 11, 13), "adjustment", 8),
    ("r2", "cus_Alpha", date(2026, 11, 14), "usage", 40),
    ("r3", "cus_Beta", date(2026, 11, 14), "usage", 999),
    ("r4", "cus_Gamma", date(2026, 11, 14), "usage", 1),
]


def noon(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 12, tzinfo=UTC)


def expected_totals(ledger: list[tuple]) -> dict[str, int]:
    totals: dict[str, int] = defaultdict(int)
    for _, customer, _, _, value in ledger:
        totals[customer] += value
    return dict(totals)


def stripe_totals(base: str) -> dict[str, int]:
    totals: dict[str, int] = defaultdict(int)
    for event in stripe_admin.list_events(base):
        totals[event["payload"]["stripe_customer_id"]] += int(event["payload"]["value"])
    return dict(totals)


def write_ledger(conn: psycopg.Connection, ledger: list[tuple], cycle: date = CYCLE) -> None:
    conn.execute("delete from marts.billing_export where booked_cycle = %s", (cycle,))
    with conn.cursor().copy(
        "copy marts.billing_export (booked_cycle, rental_id, click_date, entry_kind,"
        " stripe_customer_id, value, event_timestamp, reason) from stdin"
    ) as copy:
        for rental, customer, day, kind, value in ledger:
            stamp = noon(day) if kind == "usage" else noon(cycle)
            copy.write_row((cycle, rental, day, kind, customer, value, stamp, "test"))
    conn.commit()


def write_build(
    conn: psycopg.Connection,
    *,
    success: bool = True,
    nodes: list[tuple[str, str, str, bool]] = (),
    cycle: date = CYCLE,
    model_status: str = "success",
    minutes_ago: int = 5,
) -> str:
    """One dbt build of the cycle: billing_export plus (unique_id, status, message, blocks)."""
    invocation = f"inv-{minutes_ago}-{success}-{model_status}"
    started = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    conn.execute(
        "insert into ops.dbt_invocations (invocation_id, run_date, command, started_at, success)"
        " values (%s, %s, 'build', %s, %s)",
        (invocation, cycle, started, success),
    )
    rows = [("model.clicks.billing_export", "model", model_status, None, True)]
    rows += [(uid, uid.split(".")[0], status, msg, blocks) for uid, status, msg, blocks in nodes]
    for uid, kind, status, message, blocks in rows:
        conn.execute(
            "insert into ops.dbt_node_results (invocation_id, run_date, unique_id, resource_type,"
            " status, message, blocks_export) values (%s, %s, %s, %s, %s, %s, %s)",
            (invocation, cycle, uid, kind, status, message, blocks),
        )
    conn.commit()
    return invocation


@pytest.fixture(autouse=True)
def _keep_logging():
    """cli.main sets logging up for a process; put pytest's handlers back afterwards."""
    root, ours = logging.getLogger(), logging.getLogger("loaders")
    handlers, level = root.handlers[:], ours.level
    yield
    root.handlers[:] = handlers
    ours.setLevel(level)


@pytest.fixture
def env(fresh_db, stripe_reset, monkeypatch):
    """A database with the ledger and a passed build, an emulator frozen after the cycle."""
    stripe_admin.set_clock(stripe_reset, AFTER_CYCLE)
    monkeypatch.setenv("DATABASE_URL", fresh_db.database_url)
    with psycopg.connect(fresh_db.database_url) as conn:
        conn.execute(LEDGER_DDL)
        write_ledger(conn, LEDGER)
        write_build(conn, nodes=[("test.clicks.not_null_billing_export_value", "pass", "", True)])
    return fresh_db, stripe_reset


def export_rows(settings) -> list[tuple]:
    with psycopg.connect(settings.database_url) as conn:
        return conn.execute(
            "select rental_id, click_date, revision, value, status, attempts"
            " from billing.meter_event_exports order by rental_id, click_date, revision"
        ).fetchall()


# -- the gate -----------------------------------------------------------------------------------

FAILED_TEST = "test.clicks.unique_click_rollups_rental_day"


@pytest.mark.parametrize(
    ("build", "allowed", "reason_part"),
    [
        (None, False, "no complete dbt build"),
        ({"success": True}, True, "passed"),
        (
            {"success": False, "nodes": [(FAILED_TEST, "fail", "Got 2 results", True)]},
            False,
            FAILED_TEST,
        ),
        (
            {"success": True, "nodes": [(FAILED_TEST, "warn", "Got 2 results", True)]},
            True,
            "passed",
        ),
        ({"success": True, "nodes": [(FAILED_TEST, "skipped", None, True)]}, False, FAILED_TEST),
        (
            {"success": False, "nodes": [(FAILED_TEST, "fail", "x", False)]},
            False,
            "did not succeed",
        ),
        ({"success": True, "nodes": [(FAILED_TEST, "fail", "x", False)]}, True, "passed"),
        ({"success": False, "model_status": "error"}, False, "model.clicks.billing_export"),
        ({"success": True, "model_status": "skipped"}, False, "billing_export"),
    ],
)
def test_gate_decides_from_the_latest_build(fresh_db, build, allowed, reason_part):
    # given the dbt results of the cycle (or none)
    with psycopg.connect(fresh_db.database_url) as conn:
        if build is not None:
            write_build(conn, **build)

        # when the gate checks the cycle
        decision = gate.check(conn, CYCLE)
        recorded = conn.execute(
            "select allowed, failing_tests, invocation_id from ops.export_gate_decisions"
        ).fetchall()

    # then it decides as expected, names a failing test, and records the decision
    assert decision.allowed is allowed
    assert reason_part in decision.reason
    assert recorded == [(allowed, decision.failing, decision.invocation_id)]


def test_gate_reads_only_the_latest_build(fresh_db):
    with psycopg.connect(fresh_db.database_url) as conn:
        write_build(conn, success=False, nodes=[(FAILED_TEST, "fail", "x", True)], minutes_ago=60)
        latest = write_build(conn, success=True, minutes_ago=1)
        write_build(conn, success=False, cycle=CYCLE - timedelta(days=1), minutes_ago=0)

        decision = gate.check(conn, CYCLE)

    assert (decision.allowed, decision.invocation_id) == (True, latest)


def test_gate_ignores_a_narrower_build_that_never_included_the_export_model(fresh_db):
    # given a full build that failed, then a narrow build (no billing_export) that passed
    with psycopg.connect(fresh_db.database_url) as conn:
        full = write_build(conn, success=False, nodes=[(FAILED_TEST, "fail", "x", True)],
                           minutes_ago=30)  # fmt: skip
        conn.execute(
            "insert into ops.dbt_invocations (invocation_id, run_date, command, started_at,"
            " success) values ('narrow', %s, 'build', now(), true)",
            (CYCLE,),
        )
        conn.commit()

        # when the gate checks the cycle
        decision = gate.check(conn, CYCLE)

    # then the narrow build can neither open nor close it: the full build's failure stands
    assert (decision.allowed, decision.invocation_id) == (False, full)


def test_gate_insists_on_a_build_newer_than_the_nightly_step(fresh_db):
    # given a passing build from an hour ago and a nightly whose own build left no record
    with psycopg.connect(fresh_db.database_url) as conn:
        write_build(conn, success=True, minutes_ago=60)
        step_started = datetime.now(UTC) - timedelta(minutes=1)

        # when the gate checks with the nightly's step start
        decision = gate.check(conn, CYCLE, built_after=step_started)

    # then the old build does not stand in for the missing one
    assert not decision.allowed
    assert "no complete dbt build" in decision.reason


def test_gate_names_failures_and_only_counts_what_dbt_skipped_after_them(fresh_db):
    skipped = "test.clicks.ledger_sum_equals_rollups"
    with psycopg.connect(fresh_db.database_url) as conn:
        write_build(conn, success=False, nodes=[(FAILED_TEST, "fail", "Got 1 result", True),
                                                (skipped, "skipped", None, True)])  # fmt: skip
        decision = gate.check(conn, CYCLE)

    assert decision.failing == [f"{FAILED_TEST} (fail: Got 1 result)"]
    assert "1 node(s) downstream of them skipped" in decision.reason
    assert skipped not in decision.reason


def test_refused_gate_sends_nothing_and_exits_3(env):
    settings, base = env
    with psycopg.connect(settings.database_url) as conn:
        write_build(
            conn,
            success=False,
            minutes_ago=0,
            nodes=[(FAILED_TEST, "fail", "Got 2 results, configured to fail if != 0", True)],
        )

    with pytest.raises(GateRefusedError, match=FAILED_TEST):
        export_cycle(settings, CYCLE)
    exit_code = cli.main(["export", "--date", CYCLE.isoformat()])

    assert exit_code == 3
    assert stripe_admin.list_events(base) == []
    assert export_rows(settings) == []


# -- sending ------------------------------------------------------------------------------------


def test_export_bills_each_customer_its_ledger_total(env):
    settings, base = env

    summary = export_cycle(settings, CYCLE)

    assert (summary.sent, summary.failed, summary.skipped) == (len(LEDGER), 0, 0)
    assert stripe_totals(base) == expected_totals(LEDGER)
    events = stripe_admin.list_events(base)
    assert {e["identifier"] for e in events} == {
        identifier_for(rental, day, CYCLE, 0) for rental, _, day, _, _ in LEDGER
    }
    stamps = {e["identifier"]: e["timestamp"] for e in events}
    for rental, _, day, kind, _ in LEDGER:
        expected = noon(day) if kind == "usage" else noon(CYCLE)
        assert stamps[identifier_for(rental, day, CYCLE, 0)] == int(expected.timestamp())
    assert {row[4] for row in export_rows(settings)} == {"sent"}


def test_export_stores_stripe_daily_summaries(env):
    settings, _ = env

    export_cycle(settings, CYCLE)

    with psycopg.connect(settings.database_url) as conn:
        rows = conn.execute(
            "select stripe_customer_id, sum(aggregated_value)::bigint,"
            " bool_and(end_time - start_time = interval '1 day')"
            " from billing.stripe_event_summaries group by 1"
        ).fetchall()
    assert {customer: total for customer, total, _ in rows} == expected_totals(LEDGER)
    assert all(whole_days for _, _, whole_days in rows)


def test_rerun_sends_nothing_new(env):
    settings, base = env
    export_cycle(settings, CYCLE)
    before = stripe_admin.list_events(base)

    again = export_cycle(settings, CYCLE)

    assert (again.sent, again.skipped, again.failed) == (0, len(LEDGER), 0)
    assert stripe_admin.list_events(base) == before


def test_changed_entry_sends_only_the_difference(env):
    settings, base = env
    export_cycle(settings, CYCLE)

    # given a rebuilt cycle where r1's usage fell from 120 to 100 and r4's entry vanished
    changed = [row if row[0] != "r1" or row[3] != "usage" else (*row[:4], 100) for row in LEDGER]
    changed = [row for row in changed if row[0] != "r4"]
    with psycopg.connect(settings.database_url) as conn:
        write_ledger(conn, changed)

    summary = export_cycle(settings, CYCLE)

    assert summary.sent == 2
    new = stripe_admin.list_events(base)[len(LEDGER) :]
    assert sorted((e["identifier"], e["payload"]["value"]) for e in new) == sorted(
        [
            (identifier_for("r1", date(2026, 11, 14), CYCLE, 1), "-20"),
            (identifier_for("r4", date(2026, 11, 14), CYCLE, 1), "-1"),
        ]
    )
    assert stripe_totals(base) == {**expected_totals(changed), "cus_Gamma": 0}


def test_dry_run_sends_and_writes_nothing(env, capsys):
    settings, base = env

    summary = export_cycle(settings, CYCLE, dry_run=True)
    exit_code = cli.main(["export", "--date", CYCLE.isoformat(), "--dry-run"])

    assert exit_code == 0
    expected = Counter(customer for _, customer, _, _, _ in LEDGER)
    assert {c: n for c, (n, _) in summary.per_customer.items()} == dict(expected)
    assert {c: total for c, (_, total) in summary.per_customer.items()} == expected_totals(LEDGER)
    assert "cus_Beta\t1 events\tsum 999" in capsys.readouterr().out
    assert stripe_admin.list_events(base) == []
    assert export_rows(settings) == []


# -- failures and crashes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "faults",
    [
        [{"status": 429, "code": "lock_timeout"}, {"status": 429, "code": "lock_timeout"}],
        [{"status": 500}],
        [{"status": 429, "code": "lock_timeout"}, {"status": 500}, {"status": 502}],
        [{"status": 429, "code": "rate_limit", "stripe_should_retry": True}],
        [{"drop_after_accept": True}],
    ],
)
def test_transient_failures_are_retried_and_bill_once(env, faults):
    settings, base = env
    stripe_admin.queue_faults(base, faults)

    summary = export_cycle(settings, CYCLE)

    assert (summary.sent, summary.failed) == (len(LEDGER), 0)
    assert stripe_totals(base) == expected_totals(LEDGER)
    identifiers = [e["identifier"] for e in stripe_admin.list_events(base)]
    assert len(identifiers) == len(set(identifiers)) == len(LEDGER)


@pytest.mark.parametrize(
    ("faults", "left_as", "rerun_counts"),
    [
        # 500s on both calls of the first event (each replayed twice by the SDK's retries):
        # Stripe may have stored it, so the row stays pending and the rerun confirms it
        ([{"status": 500}] * 6, "pending", {"resent_after_crash": 1, "sent": 0}),
        # 429s are decided before Stripe does anything: certainly not stored, so failed
        (
            [{"status": 429, "code": "lock_timeout"}] * 2,
            "failed",
            {"resent_after_crash": 0, "sent": 1},
        ),
    ],
)
def test_exhausted_retries_exit_1_and_the_rerun_finishes(
    env, monkeypatch, faults, left_as, rerun_counts
):
    settings, base = env
    monkeypatch.setattr("loaders.export.MAX_CALLS", 2)
    monkeypatch.setattr("loaders.export.BACKOFF_BASE_S", 0.01)
    stripe_admin.queue_faults(base, faults)

    exit_code = cli.main(["export", "--date", CYCLE.isoformat()])

    assert exit_code == 1
    rows = export_rows(settings)
    assert Counter(row[4] for row in rows) == {"sent": len(LEDGER) - 1, left_as: 1}
    assert len(stripe_admin.list_events(base)) == len(LEDGER) - 1

    # a rerun once Stripe is back sends the unfinished event, and only it
    summary = export_cycle(settings, CYCLE)
    counts = {"resent_after_crash": summary.resent_after_crash, "sent": summary.sent}
    assert counts == rerun_counts
    assert (summary.failed, summary.skipped) == (0, len(LEDGER) - 1)
    assert stripe_totals(base) == expected_totals(LEDGER)
    assert len(stripe_admin.list_events(base)) == len(LEDGER)


def test_rejected_event_is_terminal_and_others_still_go(env):
    settings, base = env
    bad = [*LEDGER, ("r9", "cust-not-stripe", date(2026, 11, 14), "usage", 5)]
    with psycopg.connect(settings.database_url) as conn:
        write_ledger(conn, bad)

    summary = export_cycle(settings, CYCLE)

    assert (summary.sent, summary.failed) == (len(LEDGER), 1)
    with psycopg.connect(settings.database_url) as conn:
        (error,) = conn.execute(
            "select error from billing.meter_event_exports where status = 'failed'"
        ).fetchone()
    assert "r9" in error and "payload[stripe_customer_id]" in error
    assert stripe_totals(base) == expected_totals(LEDGER)


def test_kill_after_stripe_accepted_then_rerun_bills_once(env):
    # given an export killed while Stripe holds its first event but has not answered yet
    settings, base = env
    stripe_admin.queue_faults(base, [{"delay_s": 20}])
    child_env = {**os.environ, "DATABASE_URL": settings.database_url}
    child = subprocess.Popen(
        [sys.executable, "-m", "loaders.cli", "-q", "export", "--date", CYCLE.isoformat()],
        env=child_env,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not stripe_admin.list_events(base) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(10)
    assert len(stripe_admin.list_events(base)) == 1
    assert [row[4] for row in export_rows(settings)] == ["pending"]

    # when the export runs again
    summary = export_cycle(settings, CYCLE)

    # then the pending event is confirmed, not sent twice, and the rest go once
    assert (summary.resent_after_crash, summary.sent, summary.failed) == (1, len(LEDGER) - 1, 0)
    assert stripe_totals(base) == expected_totals(LEDGER)
    assert len(stripe_admin.list_events(base)) == len(LEDGER)
    assert {row[4] for row in export_rows(settings)} == {"sent"}


def _pending_row(settings, rental: str, day: date, value: int, age: timedelta) -> str:
    identifier = identifier_for(rental, day, CYCLE, 0)
    with psycopg.connect(settings.database_url) as conn:
        conn.execute(
            "insert into billing.meter_event_exports (identifier, booked_cycle, rental_id,"
            " click_date, entry_kind, stripe_customer_id, event_name, value, event_timestamp,"
            " revision, status, attempts, created_at) values (%s, %s, %s, %s, 'usage',"
            " 'cus_Beta', 'valid_clicks', %s, %s, 0, 'pending', 1, now() - %s)",
            (identifier, CYCLE, rental, day, value, noon(day), age),
        )
    return identifier


def test_pending_row_whose_identifier_stripe_has_is_marked_sent(env):
    # given Stripe received r3's event under another idempotency key, and the record says pending
    settings, base = env
    identifier = _pending_row(settings, "r3", date(2026, 11, 14), 999, timedelta(minutes=5))
    response = httpx.post(
        f"{base}/v1/billing/meter_events",
        headers={
            "Authorization": f"Bearer {settings.stripe_api_key}",
            "Idempotency-Key": "lost-key",
        },
        data={
            "event_name": "valid_clicks",
            "identifier": identifier,
            "payload[stripe_customer_id]": "cus_Beta",
            "payload[value]": "999",
            "timestamp": int(noon(date(2026, 11, 14)).timestamp()),
        },
    )
    assert response.status_code == 200

    summary = export_cycle(settings, CYCLE)

    assert summary.resent_after_crash == 1
    assert stripe_totals(base) == expected_totals(LEDGER)
    assert len(stripe_admin.list_events(base)) == len(LEDGER)


def test_pending_row_older_than_a_day_is_left_for_the_operator(env):
    settings, base = env
    identifier = _pending_row(settings, "r3", date(2026, 11, 14), 999, timedelta(hours=25))

    summary = export_cycle(settings, CYCLE)

    assert (summary.stale_pending, summary.resent_after_crash) == (1, 0)
    assert not summary.ok
    assert identifier not in {e["identifier"] for e in stripe_admin.list_events(base)}
    assert "cus_Beta" not in stripe_totals(base)
