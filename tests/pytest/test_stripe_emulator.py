"""The Stripe emulator keeps the meter-event rules the export relies on.

Every test talks to the running emulator over loopback with plain httpx, so the wire format
(form fields, error shapes, headers) is checked, not just what the SDK makes of it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from loaders import stack
from loaders.emulators import stripe_admin

NOW = datetime(2026, 11, 15, 1, 0, tzinfo=UTC)
NOW_S = int(NOW.timestamp())
DAY_S = 86_400


@pytest.fixture
def api(stripe_reset: str, stack_env: dict[str, str]) -> httpx.Client:
    """A client with the secret key, against an emulator frozen at NOW."""
    stripe_admin.set_clock(stripe_reset, NOW)
    headers = {"Authorization": f"Bearer {stack_env['STRIPE_API_KEY']}"}
    with httpx.Client(base_url=stripe_reset, headers=headers, timeout=30) as client:
        yield client


def event(**overrides: str | int) -> dict[str, str | int]:
    body: dict[str, str | int] = {
        "event_name": "valid_clicks",
        "payload[stripe_customer_id]": "cus_Alpha1",
        "payload[value]": "42",
        "identifier": "ev_1",
        "timestamp": NOW_S - 3600,
    }
    body.update(overrides)
    return body


def post(api: httpx.Client, body: dict, key: str | None = None) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key else {}
    return api.post("/v1/billing/meter_events", data=body, headers=headers)


def assert_stripe_error(response: httpx.Response, status: int, error_type: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["Request-Id"].startswith("req_")
    error = response.json()["error"]
    assert error["type"] == error_type
    assert isinstance(error["message"], str) and error["message"]
    return error


@pytest.mark.parametrize(
    ("field", "value", "param", "code"),
    [
        ("event_name", "clicks_typo", "event_name", "resource_missing"),
        ("payload[stripe_customer_id]", "cust_123", "payload[stripe_customer_id]", None),
        ("payload[stripe_customer_id]", "cus_12-3", "payload[stripe_customer_id]", None),
        ("payload[value]", "1.5", "payload[value]", None),
        ("payload[value]", "1234567890123456", "payload[value]", None),
        ("payload[value]", "abc", "payload[value]", None),
        ("timestamp", NOW_S - 35 * DAY_S - 1, "timestamp", "timestamp_too_far_in_past"),
        ("timestamp", NOW_S + 301, "timestamp", "timestamp_in_future"),
        ("identifier", "x" * 101, "identifier", None),
        ("payload[colour]", "red", "payload[colour]", "parameter_unknown"),
    ],
)
def test_invalid_event_is_refused_in_stripe_shape(api, field, value, param, code):
    # given an event with one field outside Stripe's rules
    # when it is posted
    response = post(api, event(**{field: value}))

    # then a 400 invalid_request_error names the parameter, and nothing is stored
    error = assert_stripe_error(response, 400, "invalid_request_error")
    assert error["param"] == param
    if code:
        assert error["code"] == code
    assert stripe_admin.list_events(str(api.base_url)) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("payload[value]", "-17"),
        ("payload[value]", "999999999999999"),
        ("timestamp", NOW_S - 35 * DAY_S),
        ("timestamp", NOW_S + 300),
        ("identifier", "y" * 100),
    ],
)
def test_edge_values_are_accepted(api, field, value):
    response = post(api, event(**{field: value}))

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "billing.meter_event"
    assert body["livemode"] is False
    assert body["created"] == NOW_S
    sent = event(**{field: value})
    assert body["payload"] == {
        "stripe_customer_id": sent["payload[stripe_customer_id]"],
        "value": str(sent["payload[value]"]),
    }
    assert body["timestamp"] == int(sent["timestamp"])


@pytest.mark.parametrize("header", [None, "Bearer sk_test_wrong", "Basic abc"])
def test_wrong_or_missing_key_is_401(api, header):
    headers = {"Authorization": header} if header else {}
    response = httpx.post(f"{api.base_url}/v1/billing/meter_events", data=event(), headers=headers)

    assert_stripe_error(response, 401, "invalid_request_error")
    assert stripe_admin.list_events(str(api.base_url)) == []


def test_unknown_url_and_meter_are_404(api):
    assert_stripe_error(api.get("/v1/charges/ch_1"), 404, "invalid_request_error")
    missing = api.get(
        "/v1/billing/meters/mtr_nope/event_summaries",
        params={"customer": "cus_A", "start_time": 0, "end_time": 60},
    )
    assert assert_stripe_error(missing, 404, "invalid_request_error")["code"] == "resource_missing"


def test_identifier_is_unique_for_24_hours_of_the_emulator_clock(api):
    base = str(api.base_url)
    # given an accepted event
    assert post(api, event()).status_code == 200

    # when the same identifier comes again within 24 h, it is refused
    stripe_admin.set_clock(base, datetime.fromtimestamp(NOW_S + DAY_S - 1, UTC))
    error = assert_stripe_error(post(api, event()), 400, "invalid_request_error")
    assert (error["param"], error["code"]) == ("identifier", "duplicate_meter_event")

    # then, 24 h after the first, it is a new event again
    stripe_admin.set_clock(base, datetime.fromtimestamp(NOW_S + DAY_S, UTC))
    assert post(api, event(timestamp=NOW_S + DAY_S - 60)).status_code == 200
    assert [e["identifier"] for e in stripe_admin.list_events(base)] == ["ev_1", "ev_1"]


def test_idempotency_key_replays_the_first_answer(api):
    base = str(api.base_url)
    first = post(api, event(), key="key-1")
    again = post(api, event(), key="key-1")

    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert len(stripe_admin.list_events(base)) == 1


def test_idempotency_key_with_other_parameters_is_an_idempotency_error(api):
    post(api, event(), key="key-1")

    response = post(api, event(**{"payload[value]": "43"}), key="key-1")

    assert_stripe_error(response, 400, "idempotency_error")
    assert len(stripe_admin.list_events(str(api.base_url))) == 1


def test_idempotency_key_expires_after_24_hours(api):
    base = str(api.base_url)
    post(api, event(), key="key-1")
    stripe_admin.set_clock(base, datetime.fromtimestamp(NOW_S + DAY_S, UTC))

    response = post(api, event(), key="key-1")

    # the key and the identifier are both forgotten: the request executes afresh
    assert response.status_code == 200
    assert "Idempotent-Replayed" not in response.headers
    assert len(stripe_admin.list_events(base)) == 2


def test_saved_500_is_replayed_under_its_key(api):
    base = str(api.base_url)
    stripe_admin.queue_faults(base, [{"status": 500}])

    first = post(api, event(), key="key-500")
    replay = post(api, event(), key="key-500")
    fresh = post(api, event(), key="key-other")

    assert_stripe_error(first, 500, "api_error")
    assert_stripe_error(replay, 500, "api_error")
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert fresh.status_code == 200
    assert len(stripe_admin.list_events(base)) == 1


@pytest.mark.parametrize("code", ["lock_timeout", "rate_limit"])
def test_429_is_decided_before_the_idempotency_layer(api, code):
    base = str(api.base_url)
    stripe_admin.queue_faults(base, [{"status": 429, "code": code}])

    refused = post(api, event(), key="key-429")
    retried = post(api, event(), key="key-429")

    assert assert_stripe_error(refused, 429, "invalid_request_error")["code"] == code
    assert retried.status_code == 200
    assert "Idempotent-Replayed" not in retried.headers


def test_faults_apply_in_order_with_their_headers(api):
    base = str(api.base_url)
    stripe_admin.queue_faults(
        base,
        [
            {"status": 409},
            {"status": 503, "stripe_should_retry": False},
            {"delay_s": 0.2},
        ],
    )

    conflict = post(api, event(identifier="a"))
    unavailable = post(api, event(identifier="b"))
    slow = post(api, event(identifier="c"))
    normal = post(api, event(identifier="d"))

    assert_stripe_error(conflict, 409, "idempotency_error")
    assert_stripe_error(unavailable, 503, "api_error")
    assert unavailable.headers["Stripe-Should-Retry"] == "false"
    assert slow.status_code == normal.status_code == 200
    assert [e["identifier"] for e in stripe_admin.list_events(base)] == ["c", "d"]


def test_drop_after_accept_stores_the_event_and_answers_nothing(api):
    base = str(api.base_url)
    stripe_admin.queue_faults(base, [{"drop_after_accept": True}])

    with pytest.raises(httpx.RemoteProtocolError):
        post(api, event(), key="key-drop")
    replay = post(api, event(), key="key-drop")

    assert [e["identifier"] for e in stripe_admin.list_events(base)] == ["ev_1"]
    assert replay.status_code == 200
    assert replay.headers["Idempotent-Replayed"] == "true"


def test_clock_is_set_read_and_released(api):
    base = str(api.base_url)
    assert stripe_admin.get_clock(base) == {"now": "2026-11-15T01:00:00Z", "frozen": True}

    stripe_admin.set_clock(base, None)
    released = stripe_admin.get_clock(base)

    assert released["frozen"] is False
    real = datetime.fromisoformat(released["now"].replace("Z", "+00:00"))
    assert abs((real - datetime.now(UTC)).total_seconds()) < 300


def test_meter_is_listed(api):
    meters = api.get("/v1/billing/meters").json()

    assert meters["object"] == "list"
    (meter,) = meters["data"]
    assert meter["id"].startswith("mtr_")
    assert meter["event_name"] == "valid_clicks"
    assert meter["default_aggregation"] == {"formula": "sum"}


def test_event_summaries_sum_per_day_and_customer(api):
    day0 = NOW_S - NOW_S % DAY_S - 3 * DAY_S
    sent = [  # (customer, seconds after day0, value)
        ("cus_A", 60, 5),
        ("cus_A", DAY_S - 1, 7),
        ("cus_A", DAY_S, 11),
        ("cus_A", 2 * DAY_S + 30, -4),
        ("cus_B", 100, 1000),
    ]
    for number, (customer, offset, value) in enumerate(sent):
        body = event(
            identifier=f"e{number}",
            timestamp=day0 + offset,
            **{"payload[stripe_customer_id]": customer, "payload[value]": value},
        )
        assert post(api, body).status_code == 200
    meter_id = api.get("/v1/billing/meters").json()["data"][0]["id"]

    daily = api.get(
        f"/v1/billing/meters/{meter_id}/event_summaries",
        params={
            "customer": "cus_A",
            "start_time": day0,
            "end_time": day0 + 3 * DAY_S,
            "value_grouping_window": "day",
        },
    ).json()
    whole = api.get(
        f"/v1/billing/meters/{meter_id}/event_summaries",
        params={"customer": "cus_A", "start_time": day0, "end_time": day0 + 3 * DAY_S},
    ).json()

    expected = {day0 + d * DAY_S: 0 for d in range(3)}
    for customer, offset, value in sent:
        if customer == "cus_A":
            expected[day0 + offset // DAY_S * DAY_S] += value
    assert {s["start_time"]: s["aggregated_value"] for s in daily["data"]} == expected
    assert all(s["object"] == "billing.meter_event_summary" for s in daily["data"])
    assert all(s["end_time"] - s["start_time"] == DAY_S for s in daily["data"])
    assert [s["aggregated_value"] for s in whole["data"]] == [sum(expected.values())]


def test_event_summaries_need_aligned_times(api):
    meter_id = api.get("/v1/billing/meters").json()["data"][0]["id"]

    response = api.get(
        f"/v1/billing/meters/{meter_id}/event_summaries",
        params={"customer": "cus_A", "start_time": NOW_S + 1, "end_time": NOW_S + 3600},
    )

    assert assert_stripe_error(response, 400, "invalid_request_error")["param"] == "start_time"


def _start_emulator(home: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "CLICKS_EMULATOR_CREDENTIAL": "sk_test_persist"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "loaders.emulators.stripe",
            "--home",
            str(home),
            "--port",
            str(port),
            "--account-id",
            "acct_persist",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    stack._wait(
        lambda: stack._answers(f"http://127.0.0.1:{port}/emulator/health"),
        "stripe emulator",
        timeout_s=30,
    )
    return proc


def test_state_survives_a_restart(tmp_path):
    # given an emulator of its own that accepted one event under an idempotency key
    port = stack.free_port()
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": "Bearer sk_test_persist", "Idempotency-Key": "key-p"}
    proc = _start_emulator(tmp_path, port)
    try:
        stripe_admin.set_clock(base, NOW)
        first = httpx.post(f"{base}/v1/billing/meter_events", data=event(), headers=headers)
        assert first.status_code == 200
    finally:
        proc.terminate()
        proc.wait(10)

    # when it restarts on the same home
    proc = _start_emulator(tmp_path, port)
    try:
        replay = httpx.post(f"{base}/v1/billing/meter_events", data=event(), headers=headers)
        clock = stripe_admin.get_clock(base)
        events = stripe_admin.list_events(base)
    finally:
        proc.terminate()
        proc.wait(10)

    # then the event, the key and the clock are still there
    assert [e["identifier"] for e in events] == ["ev_1"]
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert clock["now"] == "2026-11-15T01:00:00Z"
