"""A local Stripe that keeps the meter-event rules billing depends on.

It serves the few v1 endpoints the export uses (meter events, meters, event summaries) with
Stripe's validation, error shapes, identifier de-duplication and ``Idempotency-Key`` replays, and
adds emulator-only endpoints under ``/emulator/``: a settable clock (like a test clock), a queue
of faults for the next requests, a listing of every accepted event, and a reset. State lives in
SQLite under ``--home``, so it survives a restart. Standard library only.

The identifier-reuse error code, ``duplicate_meter_event``, is this emulator's choice: Stripe's
exact code for it was not found in public sources (see docs/billing.md).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import secrets
import sqlite3
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

log = logging.getLogger("loaders.emulators.stripe")

DAY_S = 86_400
IDENTIFIER_WINDOW_S = DAY_S
IDEMPOTENCY_WINDOW_S = DAY_S
MAX_PAST_S = 35 * DAY_S
MAX_FUTURE_S = 5 * 60
DUPLICATE_CODE = "duplicate_meter_event"
CUSTOMER_PATTERN = re.compile(r"^cus_[A-Za-z0-9]+$")
INTEGER_PATTERN = re.compile(r"^-?[0-9]+$")
EVENT_PARAMS = {
    "event_name",
    "identifier",
    "timestamp",
    "payload[stripe_customer_id]",
    "payload[value]",
}

SCHEMA = """
create table if not exists meter_events (
    seq integer primary key autoincrement,
    identifier text not null,
    event_name text not null,
    customer text not null,
    value integer not null,
    timestamp integer not null,
    created integer not null
);
create index if not exists meter_events_identifier on meter_events (identifier);
create table if not exists idempotency (
    key text primary key,
    fingerprint text not null,
    status integer not null,
    body text not null,
    created integer not null
);
create table if not exists kv (name text primary key, value text);
"""


class ApiError(Exception):
    """An answer in Stripe's error shape."""

    def __init__(self, status: int, error_type: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        fields = {name: value for name, value in extra.items() if value is not None}
        self.body = {"error": {"type": error_type, "message": message, **fields}}
        self.headers: dict[str, str] = {}


def invalid(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    extra = {key: value for key, value in (("param", param), ("code", code)) if value}
    return ApiError(400, "invalid_request_error", message, **extra)


@dataclass
class Reply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False
    delay_s: float = 0.0


class Store:
    """SQLite state and the in-memory fault queue, behind one lock."""

    def __init__(self, home: Path, event_name: str, account_id: str) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(home / "stripe.sqlite3", check_same_thread=False)
        self.db.executescript(SCHEMA)
        self.lock = threading.Lock()
        self.faults: deque[dict[str, Any]] = deque()
        self.event_name = event_name
        digest = hashlib.sha256(f"{account_id}|{event_name}".encode()).hexdigest()
        self.meter_id = "mtr_test_" + digest[:24]

    def now(self) -> int:
        row = self.db.execute("select value from kv where name = 'clock'").fetchone()
        return int(row[0]) if row and row[0] is not None else int(time.time())

    def set_clock(self, when: int | None) -> None:
        self.db.execute("insert or replace into kv values ('clock', ?)", (when,))
        self.db.commit()

    def reset(self) -> None:
        self.db.executescript("delete from meter_events; delete from idempotency; delete from kv;")
        self.db.commit()
        self.faults.clear()


# -- meter events -------------------------------------------------------------------------------


def _check_params(store: Store, params: dict[str, str]) -> None:
    for name in params:
        if name not in EVENT_PARAMS:
            raise invalid(f"Received unknown parameter: {name}", name, "parameter_unknown")
    for name in ("event_name", "payload[stripe_customer_id]", "payload[value]"):
        if not params.get(name):
            raise invalid(f"Missing required param: {name}.", name, "parameter_missing")
    if params["event_name"] != store.event_name:
        raise invalid(
            f"No active meter was found for event name {params['event_name']!r}.",
            "event_name",
            "resource_missing",
        )
    if not CUSTOMER_PATTERN.match(params["payload[stripe_customer_id]"]):
        raise invalid(
            "The customer id must look like cus_ followed by letters and digits.",
            "payload[stripe_customer_id]",
            "parameter_invalid_string",
        )
    value = params["payload[value]"]
    if not INTEGER_PATTERN.match(value) or len(value.lstrip("-").lstrip("0")) > 15:
        raise invalid(
            "The value must be a whole number of at most 15 significant digits.",
            "payload[value]",
            "parameter_invalid_integer",
        )
    if len(params.get("identifier", "")) > 100:
        raise invalid(
            "The identifier must be at most 100 characters long.",
            "identifier",
            "parameter_invalid_string",
        )


def _check_timestamp(store: Store, raw: str | None) -> int:
    now = store.now()
    if raw is None:
        return now
    if not INTEGER_PATTERN.match(raw):
        raise invalid(
            "The timestamp must be a Unix time in seconds.",
            "timestamp",
            "parameter_invalid_integer",
        )
    stamp = int(raw)
    if stamp < now - MAX_PAST_S:
        raise invalid(
            "The timestamp is more than 35 days in the past.",
            "timestamp",
            "timestamp_too_far_in_past",
        )
    if stamp > now + MAX_FUTURE_S:
        raise invalid(
            "The timestamp is more than 5 minutes in the future.",
            "timestamp",
            "timestamp_in_future",
        )
    return stamp


def event_object(row: tuple) -> dict[str, Any]:
    identifier, event_name, customer, value, stamp, created = row
    return {
        "object": "billing.meter_event",
        "created": created,
        "event_name": event_name,
        "identifier": identifier,
        "livemode": False,
        "payload": {"stripe_customer_id": customer, "value": str(value)},
        "timestamp": stamp,
    }


def create_meter_event(store: Store, params: dict[str, str]) -> dict[str, Any]:
    """Validate and store one event; an identifier seen in the last 24 h is refused."""
    _check_params(store, params)
    stamp = _check_timestamp(store, params.get("timestamp"))
    now = store.now()
    identifier = params.get("identifier") or "evt_" + secrets.token_hex(12)
    seen = store.db.execute(
        "select 1 from meter_events where identifier = ? and created > ?",
        (identifier, now - IDENTIFIER_WINDOW_S),
    ).fetchone()
    if seen:
        raise invalid(
            f"A meter event with identifier {identifier!r} was already received "
            "in the last 24 hours.",
            "identifier",
            DUPLICATE_CODE,
        )
    row = (
        identifier,
        params["event_name"],
        params["payload[stripe_customer_id]"],
        int(params["payload[value]"]),
        stamp,
        now,
    )
    store.db.execute(
        "insert into meter_events (identifier, event_name, customer, value, timestamp, created)"
        " values (?, ?, ?, ?, ?, ?)",
        row,
    )
    store.db.commit()
    return event_object(row)


def all_events(store: Store) -> list[dict[str, Any]]:
    rows = store.db.execute(
        "select identifier, event_name, customer, value, timestamp, created from meter_events"
        " order by seq"
    ).fetchall()
    return [event_object(row) for row in rows]


# -- meters and summaries -----------------------------------------------------------------------


def meter_object(store: Store) -> dict[str, Any]:
    return {
        "id": store.meter_id,
        "object": "billing.meter",
        "created": 1_767_225_600,
        "customer_mapping": {"event_payload_key": "stripe_customer_id", "type": "by_id"},
        "default_aggregation": {"formula": "sum"},
        "display_name": "Valid clicks",
        "event_name": store.event_name,
        "event_time_window": None,
        "livemode": False,
        "status": "active",
        "status_transitions": {"deactivated_at": None},
        "updated": 1_767_225_600,
        "value_settings": {"event_payload_key": "value"},
    }


def list_object(url: str, data: list[dict[str, Any]], has_more: bool = False) -> dict[str, Any]:
    return {"object": "list", "data": data, "has_more": has_more, "url": url}


def _time_param(query: dict[str, str], name: str, step: int) -> int:
    raw = query.get(name)
    if raw is None:
        raise invalid(f"Missing required param: {name}.", name, "parameter_missing")
    if not INTEGER_PATTERN.match(raw):
        raise invalid(f"{name} must be a Unix time in seconds.", name, "parameter_invalid_integer")
    if int(raw) % step:
        raise invalid(f"{name} must be aligned to a {step // 60}-minute boundary.", name)
    return int(raw)


def summary_windows(query: dict[str, str]) -> list[tuple[int, int]]:
    window = query.get("value_grouping_window")
    if window not in (None, "day", "hour"):
        raise invalid("value_grouping_window must be day or hour.", "value_grouping_window")
    step = {"day": DAY_S, "hour": 3600}.get(window or "", 60)
    start, end = _time_param(query, "start_time", step), _time_param(query, "end_time", step)
    if end <= start:
        raise invalid("end_time must be after start_time.", "end_time")
    if window is None:
        return [(start, end)]
    return [(lo, lo + step) for lo in range(start, end, step)]


def event_summaries(store: Store, meter_id: str, query: dict[str, str]) -> dict[str, Any]:
    if meter_id != store.meter_id:
        raise ApiError(
            404,
            "invalid_request_error",
            f"No such meter: '{meter_id}'",
            code="resource_missing",
            param="id",
        )
    customer = query.get("customer")
    if not customer:
        raise invalid("Missing required param: customer.", "customer", "parameter_missing")
    summaries = []
    for start, end in summary_windows(query):
        (total,) = store.db.execute(
            "select coalesce(sum(value), 0) from meter_events where customer = ?"
            " and timestamp >= ? and timestamp < ?",
            (customer, start, end),
        ).fetchone()
        digest = hashlib.sha256(f"{meter_id}|{customer}|{start}|{end}".encode()).hexdigest()
        summaries.append(
            {
                "id": "mtrusg_" + digest[:24],
                "object": "billing.meter_event_summary",
                "aggregated_value": float(total),
                "end_time": end,
                "livemode": False,
                "meter": meter_id,
                "start_time": start,
            }
        )
    return _page(f"/v1/billing/meters/{meter_id}/event_summaries", summaries, query)


def _page(url: str, items: list[dict[str, Any]], query: dict[str, str]) -> dict[str, Any]:
    limit = max(1, min(100, int(query.get("limit", "10"))))
    after = query.get("starting_after")
    if after:
        ids = [item["id"] for item in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    return list_object(url, items[:limit], has_more=len(items) > limit)


# -- idempotency and faults ---------------------------------------------------------------------


def fingerprint(method: str, path: str, params: dict[str, str]) -> str:
    text = json.dumps([method, path, sorted(params.items())])
    return hashlib.sha256(text.encode()).hexdigest()


def saved_reply(store: Store, key: str, print_: str) -> Reply | None:
    """The saved answer of a key still inside its 24 h, or an error if the request differs."""
    now = store.now()
    store.db.execute("delete from idempotency where created <= ?", (now - IDEMPOTENCY_WINDOW_S,))
    row = store.db.execute(
        "select fingerprint, status, body from idempotency where key = ?", (key,)
    ).fetchone()
    if row is None:
        return None
    if row[0] != print_:
        raise ApiError(
            400,
            "idempotency_error",
            f"Idempotency key {key!r} was first used with other parameters; "
            "send a new key for a different request.",
        )
    return Reply(row[1], json.loads(row[2]), {"Idempotent-Replayed": "true"})


def save_reply(store: Store, key: str, print_: str, reply: Reply) -> None:
    store.db.execute(
        "insert or replace into idempotency values (?, ?, ?, ?, ?)",
        (key, print_, reply.status, json.dumps(reply.body), store.now()),
    )
    store.db.commit()


def fault_error(fault: dict[str, Any]) -> ApiError | None:
    status = fault.get("status")
    if not status:
        return None
    if status == 429:
        code = fault.get("code", "rate_limit")
        error = ApiError(
            429, "invalid_request_error", f"Request refused ({code}); retry later.", code=code
        )
    elif status == 409:
        error = ApiError(
            409,
            "idempotency_error",
            "Another request with this key is in flight.",
            code=fault.get("code", "idempotency_key_in_use"),
        )
    elif status >= 500:
        error = ApiError(status, "api_error", fault.get("message", "Something went wrong."))
    else:
        error = ApiError(
            status,
            fault.get("type", "invalid_request_error"),
            fault.get("message", "Injected error."),
            code=fault.get("code"),
        )
    if "stripe_should_retry" in fault:
        error.headers["Stripe-Should-Retry"] = "true" if fault["stripe_should_retry"] else "false"
    if "retry_after" in fault:
        error.headers["Retry-After"] = str(fault["retry_after"])
    return error


# -- HTTP ---------------------------------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    store: Store
    api_key: str
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        try:
            if url.path.startswith("/emulator/"):
                reply = self._admin(method, url.path, body)
            else:
                reply = self._api(method, url.path, url.query, body)
        except ApiError as exc:
            reply = Reply(exc.status, exc.body, exc.headers)
        except Exception:
            log.exception("request failed: %s %s", method, url.path)
            reply = Reply(500, {"error": {"type": "api_error", "message": "emulator bug"}})
        if reply.delay_s:
            time.sleep(reply.delay_s)
        if reply.drop:
            self.close_connection = True
            return
        try:
            self._send(reply)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (or was killed) while a delay fault held the answer back.
            self.close_connection = True

    def _send(self, reply: Reply) -> None:
        data = json.dumps(reply.body).encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Request-Id", "req_" + secrets.token_hex(8))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _authorised(self) -> bool:
        header = self.headers.get("Authorization", "")
        given = header.removeprefix("Bearer ")
        return bool(self.api_key) and secrets.compare_digest(given.encode(), self.api_key.encode())

    def _api(self, method: str, path: str, query: str, body: str) -> Reply:
        if not self._authorised():
            raise ApiError(
                401,
                "invalid_request_error",
                "Invalid API Key provided; send your secret key as a Bearer token.",
            )
        store = self.store
        with store.lock:
            fault = store.faults.popleft() if store.faults else {}
            error = fault_error(fault)
            if error is not None and error.status in (409, 429):
                raise error
            params = dict(parse_qsl(body if method == "POST" else query, keep_blank_values=True))
            key = self.headers.get("Idempotency-Key") if method == "POST" else None
            reply = self._execute(method, path, params, key, error)
        reply.delay_s = float(fault.get("delay_s", 0))
        reply.drop = bool(fault.get("drop_after_accept")) and reply.status == 200
        return reply

    def _execute(
        self,
        method: str,
        path: str,
        params: dict[str, str],
        key: str | None,
        error: ApiError | None,
    ) -> Reply:
        store = self.store
        print_ = fingerprint(method, path, params)
        if key:
            replay = saved_reply(store, key, print_)
            if replay is not None:
                return replay
        try:
            if error is not None:
                raise error
            reply = Reply(200, route(store, method, path, params))
        except ApiError as exc:
            reply = Reply(exc.status, exc.body, exc.headers)
            # Parameter checks run before execution starts, so Stripe keeps no result for them.
            if exc.status == 400 and exc.body["error"].get("code") != DUPLICATE_CODE:
                return reply
        if key:
            save_reply(store, key, print_, reply)
        return reply

    def _admin(self, method: str, path: str, body: str) -> Reply:
        store = self.store
        payload = json.loads(body) if body else {}
        with store.lock:
            if path == "/emulator/health":
                return Reply(200, {"ok": True})
            if path == "/emulator/clock":
                if method == "POST":
                    when = payload.get("now")
                    store.set_clock(None if when is None else parse_time(when))
                return Reply(200, {"now": format_time(store.now()), "frozen": _frozen(store)})
            if path == "/emulator/faults" and method == "POST":
                store.faults.extend(payload.get("faults", []))
                return Reply(200, {"queued": len(store.faults)})
            if path == "/emulator/meter_events":
                return Reply(200, list_object(path, all_events(store)))
            if path == "/emulator/reset" and method == "POST":
                store.reset()
                return Reply(200, {"reset": True})
        raise ApiError(404, "invalid_request_error", f"Unrecognized request URL ({method}: {path})")


def route(store: Store, method: str, path: str, params: dict[str, str]) -> dict[str, Any]:
    parts = path.strip("/").split("/")
    if method == "POST" and path == "/v1/billing/meter_events":
        return create_meter_event(store, params)
    if method == "GET" and path == "/v1/billing/meters":
        return list_object(path, [meter_object(store)])
    if method == "GET" and len(parts) == 4 and parts[:3] == ["v1", "billing", "meters"]:
        if parts[3] != store.meter_id:
            raise ApiError(
                404,
                "invalid_request_error",
                f"No such meter: '{parts[3]}'",
                code="resource_missing",
                param="id",
            )
        return meter_object(store)
    if method == "GET" and len(parts) == 5 and parts[4] == "event_summaries":
        return event_summaries(store, parts[3], params)
    raise ApiError(404, "invalid_request_error", f"Unrecognized request URL ({method}: {path})")


def _frozen(store: Store) -> bool:
    row = store.db.execute("select value from kv where name = 'clock'").fetchone()
    return bool(row and row[0] is not None)


def parse_time(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


def format_time(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def main() -> None:
    parser = argparse.ArgumentParser(description="local Stripe meter-events emulator")
    parser.add_argument("--home", required=True, type=Path)
    parser.add_argument("--port", required=True, type=int)
    parser.add_argument("--account-id", required=True)
    parser.add_argument("--event-name", default="valid_clicks")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)-5s %(message)s")

    Handler.store = Store(args.home, args.event_name, args.account_id)
    Handler.api_key = os.environ.get("CLICKS_EMULATOR_CREDENTIAL", "")
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    log.info("stripe emulator on 127.0.0.1:%d, meter %s", args.port, Handler.store.meter_id)
    server.serve_forever()


if __name__ == "__main__":
    main()
