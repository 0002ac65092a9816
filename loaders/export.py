"""`clicks export`: send what cycle D booked in the ledger to Stripe as meter events.

The input is ``marts.billing_export`` (one row per ledger entry of the cycle). For each key
(rental_id, click_date, booked_cycle) the export sends the ledger value minus what
``billing.meter_event_exports`` already records for that key, so a rerun sends nothing new and
a rebuilt cycle sends only the difference. Each event is committed as ``pending`` before the call
and marked ``sent`` (Stripe has it) or ``failed`` (Stripe refused it, so certainly does not have
it) after; it stays ``pending`` when no answer said either way (a crash, lost responses, 5xx). A
``pending`` row found at start is re-sent with the same identifier and idempotency key. Events go
one at a time, which keeps Stripe's rule of one concurrent call per customer and meter.
docs/billing.md has the rules.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from loaders import gate
from loaders.db import connect, ensure_schemas
from loaders.errors import ClicksError, ConcurrentRunError, TerminalError, TransientError
from loaders.settings import Settings, redact

log = logging.getLogger(__name__)

EVENT_NAME = "valid_clicks"
DEFAULT_API_BASE = "https://api.stripe.com"
# Codes Stripe may use for an identifier it already received; the emulator uses the first.
DUPLICATE_CODES = frozenset({"duplicate_meter_event", "meter_event_identifier_already_used"})
SDK_NETWORK_RETRIES = 2
MAX_CALLS = 8
CALLS_PER_KEY = 3
BACKOFF_BASE_S = 0.25
BACKOFF_MAX_S = 5.0
STALE_PENDING = timedelta(hours=24)
PROGRESS_EVERY = 100
LOCK_NAME = "clicks export"


@dataclass(frozen=True)
class Event:
    """One meter event to send, as recorded in billing.meter_event_exports."""

    identifier: str
    booked_cycle: date
    rental_id: str
    click_date: date
    entry_kind: str
    stripe_customer_id: str
    value: int
    event_timestamp: datetime
    revision: int

    def describe(self) -> str:
        return (
            f"meter event {self.identifier} (rental {self.rental_id}, day {self.click_date}, "
            f"cycle {self.booked_cycle}, customer {self.stripe_customer_id}, "
            f"value {self.value})"
        )


@dataclass
class ExportSummary:
    cycle_date: date
    dry_run: bool = False
    sent: int = 0
    skipped: int = 0
    resent_after_crash: int = 0
    failed: int = 0
    stale_pending: int = 0
    # customer -> [events, sum of values] of what was (or, in a dry run, would be) sent
    per_customer: dict[str, list[int]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.stale_pending == 0


def identifier_for(rental_id: str, click_date: date, booked_cycle: date, revision: int) -> str:
    text = f"{rental_id}|{click_date.isoformat()}|{booked_cycle.isoformat()}|{revision}"
    return "clk_" + hashlib.sha256(text.encode()).hexdigest()[:40]


def idempotency_key_for(identifier: str, attempt: int) -> str:
    """The key of the attempt-th key generation: the identifier itself first, then numbered."""
    return identifier if attempt <= 1 else f"{identifier}-{attempt}"


# -- reading the ledger and the record ----------------------------------------------------------


Key = tuple[str, date, date]


def read_ledger(conn: psycopg.Connection, cycle_date: date) -> list[dict[str, Any]]:
    try:
        cur = conn.cursor(row_factory=dict_row).execute(
            "select rental_id, click_date, booked_cycle, entry_kind, stripe_customer_id, value,"
            " event_timestamp from marts.billing_export where booked_cycle = %s"
            " order by stripe_customer_id, rental_id, click_date",
            (cycle_date,),
        )
    except psycopg.errors.UndefinedTable:
        conn.rollback()
        raise TerminalError("marts.billing_export does not exist: run `dbt build` first") from None
    return cur.fetchall()


def read_recorded(conn: psycopg.Connection, cycle_date: date) -> dict[Key, list[dict[str, Any]]]:
    """Every recorded event of the cycle, by key, whatever its status."""
    cur = conn.cursor(row_factory=dict_row).execute(
        "select identifier, rental_id, click_date, booked_cycle, entry_kind, stripe_customer_id,"
        " value, event_timestamp, revision, status, attempts, created_at"
        " from billing.meter_event_exports where booked_cycle = %s order by revision",
        (cycle_date,),
    )
    recorded: dict[Key, list[dict[str, Any]]] = defaultdict(list)
    for item in cur.fetchall():
        recorded[(item["rental_id"], item["click_date"], item["booked_cycle"])].append(item)
    return recorded


def _event_from_row(row: dict[str, Any]) -> Event:
    return Event(
        row["identifier"],
        row["booked_cycle"],
        row["rental_id"],
        row["click_date"],
        row["entry_kind"],
        row["stripe_customer_id"],
        row["value"],
        row["event_timestamp"],
        row["revision"],
    )


def plan_differences(
    ledger: list[dict[str, Any]], recorded: dict[Key, list[dict[str, Any]]], summary: ExportSummary
) -> list[Event]:
    """New events: per key, the ledger value minus everything recorded for it."""
    planned = []
    wanted = {(row["rental_id"], row["click_date"], row["booked_cycle"]): row for row in ledger}
    # A key recorded earlier but gone from a rebuilt ledger is owed back in full.
    for key, rows in recorded.items():
        wanted.setdefault(key, {**rows[0], "value": 0, "entry_kind": "adjustment"})
    for key, row in wanted.items():
        rows = recorded.get(key, [])
        remainder = row["value"] - sum(item["value"] for item in rows)
        if remainder == 0:
            # Unsent rows of the key are retried with their own identifiers, not skipped.
            summary.skipped += all(item["status"] == "sent" for item in rows)
            continue
        revision = len(rows)
        planned.append(
            Event(
                identifier_for(*key, revision),
                key[2],
                key[0],
                key[1],
                row["entry_kind"] if not rows else "adjustment",
                row["stripe_customer_id"],
                remainder,
                row["event_timestamp"],
                revision,
            )
        )
    return sorted(planned, key=lambda event: (event.stripe_customer_id, event.identifier))


def unresolved(recorded: dict[Key, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    rows = [row for rows in recorded.values() for row in rows if row["status"] != "sent"]
    return sorted(rows, key=lambda row: (row["stripe_customer_id"], row["identifier"]))


# -- writing the record -------------------------------------------------------------------------


def record_pending(conn: psycopg.Connection, event: Event, attempts: int) -> None:
    conn.execute(
        "insert into billing.meter_event_exports (identifier, booked_cycle, rental_id,"
        " click_date, entry_kind, stripe_customer_id, event_name, value, event_timestamp,"
        " revision, status, attempts) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
        " 'pending', %s)"
        " on conflict (identifier) do update set status = 'pending',"
        " attempts = excluded.attempts, error = null",
        (
            event.identifier,
            event.booked_cycle,
            event.rental_id,
            event.click_date,
            event.entry_kind,
            event.stripe_customer_id,
            EVENT_NAME,
            event.value,
            event.event_timestamp,
            event.revision,
            attempts,
        ),
    )
    conn.commit()


def record_attempt(conn: psycopg.Connection, identifier: str, attempts: int) -> None:
    conn.execute(
        "update billing.meter_event_exports set attempts = %s where identifier = %s",
        (attempts, identifier),
    )
    conn.commit()


def record_outcome(
    conn: psycopg.Connection,
    identifier: str,
    status: str,
    *,
    response: dict | None,
    error: str | None,
) -> None:
    conn.execute(
        "update billing.meter_event_exports set status = %s, stripe_response = %s, error = %s,"
        " sent_at = case when %s = 'sent' then now() end where identifier = %s",
        (status, Jsonb(response) if response is not None else None, error, status, identifier),
    )
    conn.commit()


# -- talking to Stripe --------------------------------------------------------------------------


def make_client(settings: Settings, *, network_retries: int = SDK_NETWORK_RETRIES) -> Any:
    import stripe

    return stripe.StripeClient(
        settings.stripe_api_key,
        base_addresses={"api": settings.stripe_api_base or DEFAULT_API_BASE},
        http_client=stripe.HTTPXClient(allow_sync_methods=True),
        max_network_retries=network_retries,
    )


def event_params(event: Event) -> dict[str, Any]:
    return {
        "event_name": EVENT_NAME,
        "identifier": event.identifier,
        "timestamp": int(event.event_timestamp.timestamp()),
        "payload": {"stripe_customer_id": event.stripe_customer_id, "value": str(event.value)},
    }


def is_duplicate(exc: Exception) -> bool:
    """Stripe refused the identifier because it already holds an event with it."""
    import stripe

    return isinstance(exc, stripe.InvalidRequestError) and exc.code in DUPLICATE_CODES


def classify(exc: Exception, event: Event, settings: Settings) -> ClicksError:
    """Stripe's failure as TransientError (retry) or TerminalError (fix the event first)."""
    import stripe

    status = getattr(exc, "http_status", None)
    param = getattr(exc, "param", None)
    where = f" (param {param})" if param else ""
    message = getattr(exc, "user_message", None) or str(exc)
    reason = redact(f"{type(exc).__name__} {status or ''}{where}: {message}", settings)
    if isinstance(exc, stripe.APIConnectionError) or status == 429 or (status or 0) >= 500:
        retry_after = (getattr(exc, "headers", None) or {}).get("retry-after")
        return TransientError(
            f"Stripe did not take {event.describe()}: {reason}",
            retry_after=float(retry_after) if retry_after else None,
        )
    return TerminalError(
        f"Stripe rejected {event.describe()}: {reason}; fix the entry, delete "
        "its failed row in billing.meter_event_exports, then export again"
    )


def _backoff(call: int, error: TransientError) -> None:
    delay = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2**call) * random.uniform(0.5, 1.0)
    time.sleep(max(delay, min(error.retry_after or 0.0, 60.0)))


@dataclass
class Outcome:
    response: dict | None = None
    error: ClicksError | None = None
    # True once a call may have reached Stripe without an answer saying so (5xx, lost response)
    in_doubt: bool = False

    @property
    def status(self) -> str:
        if self.error is None:
            return "sent"
        return "pending" if self.in_doubt and isinstance(self.error, TransientError) else "failed"


def deliver(
    client: Any, conn: psycopg.Connection, event: Event, attempt: int, settings: Settings
) -> Outcome:
    """Send one event until Stripe takes it, refuses it, or the attempts run out.

    ``attempt`` numbers the idempotency key in use. A key is given up for a fresh one after a
    5xx (Stripe would replay the saved 500) or after CALLS_PER_KEY other transient failures; the
    identifier still de-duplicates across keys.
    """
    import stripe

    outcome, calls_on_key = Outcome(), 0
    for call in range(MAX_CALLS):
        key = idempotency_key_for(event.identifier, attempt)
        try:
            created = client.v1.billing.meter_events.create(
                event_params(event), options={"idempotency_key": key}
            )
            return Outcome(created.to_dict(), None, outcome.in_doubt)
        except stripe.StripeError as exc:
            if is_duplicate(exc):
                return Outcome({"duplicate_of_earlier_send": True, "code": exc.code})
            outcome.error = classify(exc, event, settings)
            server_error = (exc.http_status or 0) >= 500
            outcome.in_doubt |= server_error or isinstance(exc, stripe.APIConnectionError)
        if isinstance(outcome.error, TerminalError):
            return outcome
        calls_on_key += 1
        if server_error or calls_on_key >= CALLS_PER_KEY:
            attempt, calls_on_key = attempt + 1, 0
            record_attempt(conn, event.identifier, attempt)
        log.debug("retrying %s after: %s", event.identifier, outcome.error)
        _backoff(call, outcome.error)
    return outcome


def send(
    client: Any, conn: psycopg.Connection, event: Event, attempt: int, settings: Settings
) -> bool:
    """Deliver and record. Unanswered calls leave the row pending: Stripe may hold the event."""
    outcome = deliver(client, conn, event, attempt, settings)
    error = str(outcome.error) if outcome.error else None
    record_outcome(conn, event.identifier, outcome.status, response=outcome.response, error=error)
    if outcome.error is not None:
        log.error("%s (left %s)", outcome.error, outcome.status)
        return False
    return True


# -- Stripe's view, for reconciliation ----------------------------------------------------------


def find_meter_id(client: Any) -> str:
    for meter in client.v1.billing.meters.list({"limit": 100}).auto_paging_iter():
        if meter.event_name == EVENT_NAME and meter.status == "active":
            return meter.id
    raise TerminalError(
        f"Stripe has no active meter for event name {EVENT_NAME!r}: create it "
        "(sum aggregation, customer key stripe_customer_id, value key value)"
    )


def _day_start(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def pull_summaries(
    client: Any, conn: psycopg.Connection, meter_id: str, days_by_customer: dict[str, set[date]]
) -> int:
    """Upsert Stripe's daily totals of each customer for the days this export touched."""
    count = 0
    for customer, days in sorted(days_by_customer.items()):
        params = {
            "customer": customer,
            "start_time": _day_start(min(days)),
            "end_time": _day_start(max(days) + timedelta(days=1)),
            "value_grouping_window": "day",
            "limit": 100,
        }
        pages = client.v1.billing.meters.event_summaries.list(meter_id, params)
        for item in pages.auto_paging_iter():
            conn.execute(
                "insert into billing.stripe_event_summaries (stripe_customer_id, meter_id,"
                " event_name, start_time, end_time, aggregated_value) values"
                " (%s, %s, %s, to_timestamp(%s), to_timestamp(%s), %s)"
                " on conflict (stripe_customer_id, meter_id, start_time, end_time) do update"
                " set aggregated_value = excluded.aggregated_value, fetched_at = now()",
                (
                    customer,
                    meter_id,
                    EVENT_NAME,
                    item.start_time,
                    item.end_time,
                    item.aggregated_value,
                ),
            )
            count += 1
    conn.commit()
    return count


def touched_days(conn: psycopg.Connection, cycle_date: date) -> dict[str, set[date]]:
    """The UTC days, per customer, of every event of the cycle Stripe holds."""
    rows = conn.execute(
        "select distinct stripe_customer_id, (event_timestamp at time zone 'UTC')::date"
        " from billing.meter_event_exports where booked_cycle = %s and status = 'sent'",
        (cycle_date,),
    ).fetchall()
    days: dict[str, set[date]] = defaultdict(set)
    for customer, day in rows:
        days[customer].add(day)
    return days


def refresh_summaries(
    client: Any, conn: psycopg.Connection, days: dict[str, set[date]], settings: Settings
) -> int:
    """Pull Stripe's view; a failure here leaves the events sent and only the view stale."""
    import stripe

    if not days:
        return 0
    try:
        return pull_summaries(client, conn, find_meter_id(client), days)
    except stripe.StripeError as exc:
        conn.rollback()
        log.warning(
            "could not pull Stripe's event summaries (%s); the events are sent and recorded, "
            "rerun the export of the cycle to pull them again",
            redact(str(exc), settings),
        )
        return 0


# -- the cycle ----------------------------------------------------------------------------------


def _take_lock(conn: psycopg.Connection) -> None:
    (locked,) = conn.execute(
        "select pg_try_advisory_lock(hashtextextended(%s, 0))", (LOCK_NAME,)
    ).fetchone()
    conn.commit()
    if not locked:
        raise ConcurrentRunError("another `clicks export` holds the export lock; wait for it")


def _tally(summary: ExportSummary, event: Event) -> None:
    counts = summary.per_customer.setdefault(event.stripe_customer_id, [0, 0])
    counts[0] += 1
    counts[1] += event.value


def resolve_unfinished(
    client: Any,
    conn: psycopg.Connection,
    rows: list[dict[str, Any]],
    summary: ExportSummary,
    settings: Settings,
) -> None:
    """Re-send pending rows (a crash) with their key, and failed rows with a fresh key."""
    now = datetime.now(UTC)
    for row in rows:
        event = _event_from_row(row)
        if row["status"] == "pending" and now - row["created_at"] > STALE_PENDING:
            summary.stale_pending += 1
            log.error(
                "%s has been pending since %s, beyond Stripe's 24 h de-duplication: "
                "reconcile it against the event summaries, then mark it sent or failed",
                event.describe(),
                row["created_at"],
            )
            continue
        attempt = max(row["attempts"], 1) if row["status"] == "pending" else row["attempts"] + 1
        record_pending(conn, event, attempt)
        if send(client, conn, event, attempt, settings):
            summary.resent_after_crash += row["status"] == "pending"
            summary.sent += row["status"] == "failed"
            _tally(summary, event)
        else:
            summary.failed += 1


def send_planned(
    client: Any,
    conn: psycopg.Connection,
    planned: list[Event],
    summary: ExportSummary,
    settings: Settings,
) -> None:
    for index, event in enumerate(planned, start=1):
        record_pending(conn, event, 1)
        if send(client, conn, event, 1, settings):
            summary.sent += 1
            _tally(summary, event)
        else:
            summary.failed += 1
        next_customer = planned[index].stripe_customer_id if index < len(planned) else None
        if index % PROGRESS_EVERY == 0 or next_customer != event.stripe_customer_id:
            log.debug(
                "export %s: %d/%d events done (customer %s)",
                event.booked_cycle,
                index,
                len(planned),
                event.stripe_customer_id,
            )


def _dry_run(
    planned: list[Event], retries: list[dict[str, Any]], summary: ExportSummary
) -> ExportSummary:
    summary.dry_run = True
    for event in [*map(_event_from_row, retries), *planned]:
        _tally(summary, event)
    return summary


def export_cycle(
    settings: Settings,
    cycle_date: date,
    *,
    dry_run: bool = False,
    network_retries: int = SDK_NETWORK_RETRIES,
    built_after: datetime | None = None,
) -> ExportSummary:
    """Send cycle D's ledger entries that Stripe does not have yet; see the module docstring."""
    summary = ExportSummary(cycle_date)
    with connect(settings) as conn:
        ensure_schemas(conn, ("billing", "ops"))
        _take_lock(conn)
        gate.check(conn, cycle_date, built_after=built_after).raise_if_refused(cycle_date)

        ledger = read_ledger(conn, cycle_date)
        recorded = read_recorded(conn, cycle_date)
        retries = unresolved(recorded)
        planned = plan_differences(ledger, recorded, summary)
        log.info(
            "export %s: %d ledger entries, %d new events, %d to resolve, %d already sent",
            cycle_date,
            len(ledger),
            len(planned),
            len(retries),
            summary.skipped,
        )
        if dry_run:
            return _dry_run(planned, retries, summary)

        client = make_client(settings, network_retries=network_retries)
        resolve_unfinished(client, conn, retries, summary, settings)
        send_planned(client, conn, planned, summary, settings)

        pulled = refresh_summaries(client, conn, touched_days(conn, cycle_date), settings)
    log.info(
        "export %s: sent %d, skipped %d as already sent, resent %d after a crash, "
        "failed %d, stale pending %d; %d Stripe summaries pulled",
        cycle_date,
        summary.sent,
        summary.skipped,
        summary.resent_after_crash,
        summary.failed,
        summary.stale_pending,
        pulled,
    )
    return summary


# -- command line -------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    del name
    parser.add_argument(
        "--date",
        required=True,
        type=date.fromisoformat,
        help="the cycle (UTC day, YYYY-MM-DD) whose ledger entries to send",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print per customer what would be sent; send and write nothing",
    )


def run(args: argparse.Namespace) -> int:
    required = ("database_url",) if args.dry_run else ("database_url", "stripe_api_key")
    settings = Settings.load(require=required)
    summary = export_cycle(settings, args.date, dry_run=args.dry_run)
    if summary.dry_run:
        for customer, (events, total) in sorted(summary.per_customer.items()):
            print(f"{customer}\t{events} events\tsum {total}")
        print(
            f"total\t{sum(c[0] for c in summary.per_customer.values())} events\t"
            f"{summary.skipped} keys already sent"
        )
    return 0 if summary.ok else 1
