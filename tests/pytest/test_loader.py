"""`clicks load` against the AE emulator and the embedded Postgres, over real loopback HTTP.

Truth is computed here from the points each test writes: weighted sums per hour and dimension,
so a loader that counted rows, dropped a row or landed a slice twice disagrees with it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql

from loaders.ae_client import QueryResult, RetryPolicy
from loaders.contract import load_contract
from loaders.emulators import ae_admin
from loaders.errors import BadValueError, ConcurrentRunError, TerminalError, TransientError
from loaders.landing import CLICK_DIMENSIONS, LoadSummary, load_window
from loaders.settings import Secret, Settings

T0 = datetime(2026, 11, 1, tzinfo=UTC)
TOO_LARGE = {"status": 429, "body": "Resource limit: result is too large"}
FORBIDDEN = {"status": 403, "body": "Authorization error: the token is invalid"}
FAST = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05)
CLICK_COLUMNS = ("click_hour", *CLICK_DIMENSIONS)
INVALIDATION_KEYS = (
    "written_hour",
    "original_click_hour",
    "route_id",
    "renter_id",
    "rental_id",
    "owner_id",
    "invalidation_reason",
)


# --- Points and independent truth ----------------------------------------------------------------


def point(minute: int, *, si: int = 1, legacy: bool = False, **fields: Any) -> dict[str, Any]:
    """A Worker point at T0 + minute; blob values by contract name, doubles as clicks/invalid."""
    contract = load_contract()
    values = {
        "host": "go.example",
        "path": "/r/abc",
        "route_id": "route_a",
        "renter_id": "renter_a",
        "country": "DE",
        "asn": "3320",
        "bot_bucket": "likely_human",
        "referrer_domain": "news.example",
        "rental_id": "rental_a",
        "owner_id": "owner_a",
        "user_agent_hash": "ua1",
        "device_class": "mobile",
        "event_kind": "click",
        "original_click_at": "",
        "invalidation_reason": "",
    }
    doubles = [fields.pop("clicks", 1.0), fields.pop("invalid", 0.0)]
    values.update(fields)
    blobs = [values[spec.name] for spec in contract.blobs]
    if legacy:
        blobs = blobs[: contract.legacy_blob_count]
    stamp = T0 + timedelta(minutes=minute)
    return {
        "blobs": blobs,
        "doubles": doubles,
        "indexes": [values["rental_id"] or values["renter_id"]],
        "timestamp": stamp.isoformat().replace("+00:00", "Z"),
        "sample_interval": si,
    }


def invalidation(minute: int, original: str, count: float, *, si: int = 1) -> dict[str, Any]:
    return point(
        minute,
        si=si,
        clicks=0.0,
        invalid=count,
        event_kind="invalidation",
        original_click_at=original,
        invalidation_reason="fraud_review",
    )


def blob(p: dict[str, Any], name: str) -> str:
    position = load_contract().blob_position(name)
    return p["blobs"][position - 1] if position <= len(p["blobs"]) else ""


def hour_of(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp).replace(minute=0, second=0)


def expected_clicks(points: list[dict[str, Any]]) -> dict[tuple, list[int]]:
    truth: dict[tuple, list[int]] = {}
    for p in points:
        if blob(p, "event_kind") not in ("", "click"):
            continue
        key = (hour_of(p["timestamp"]), *(blob(p, name) for name in CLICK_DIMENSIONS))
        row = truth.setdefault(key, [0, 0, 0, 0])
        row[0] += p["sample_interval"] * int(p["doubles"][0])
        row[1] += p["sample_interval"] * int(p["doubles"][1])
        row[2] += 1
        row[3] = max(row[3], p["sample_interval"])
    return truth


def expected_invalidations(points: list[dict[str, Any]]) -> dict[tuple, list[int]]:
    truth: dict[tuple, list[int]] = {}
    for p in points:
        if blob(p, "event_kind") != "invalidation":
            continue
        original = hour_of(blob(p, "original_click_at"))
        names = INVALIDATION_KEYS[2:]
        key = (hour_of(p["timestamp"]), original, *(blob(p, name) for name in names))
        row = truth.setdefault(key, [0, 0, 0])
        row[0] += p["sample_interval"] * int(p["doubles"][1])
        row[1] += 1
        row[2] = max(row[2], p["sample_interval"])
    return truth


def landed(settings: Settings, table: str, keys: tuple[str, ...], measures: int) -> dict:
    """Rows of a landing table keyed by hour and dimensions; a duplicate key fails the test."""
    query = sql.SQL("select * from {}").format(sql.Identifier("raw", table))
    with psycopg.connect(settings.database_url) as conn, conn.cursor() as cur:
        cur.execute(query)
        names = [column.name for column in cur.description]
        records = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    result = {}
    for record in records:
        key = tuple(record[name] for name in keys)
        assert key not in result, f"two rows for {key}"
        result[key] = [record[name] for name in names[-1 - measures : -1]]
    return result


def landed_clicks(settings: Settings) -> dict:
    return landed(settings, "ae_clicks_hourly", CLICK_COLUMNS, 4)


def landed_invalidations(settings: Settings) -> dict:
    return landed(settings, "ae_invalidations_hourly", INVALIDATION_KEYS, 3)


def digest(settings: Settings) -> str:
    """A hash of both landing tables without load_id and loaded_at."""
    query = sql.SQL(
        "select md5(coalesce(string_agg(r, '|' order by r), '')) from"
        " (select (to_jsonb(t) - 'load_id' - 'loaded_at')::text as r from {} as t) as s"
    )
    with psycopg.connect(settings.database_url) as conn:
        return ":".join(
            conn.execute(query.format(sql.Identifier("raw", table))).fetchone()[0]
            for table in ("ae_clicks_hourly", "ae_invalidations_hourly")
        )


def loads(settings: Settings) -> list[dict[str, Any]]:
    with psycopg.connect(settings.database_url) as conn, conn.cursor() as cur:
        cur.execute("select * from raw.ae_loads order by started_at")
        names = [column.name for column in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def write(base: str, settings: Settings, points: list[dict[str, Any]]) -> None:
    ae_admin.write_points(base, settings.ae_dataset, points)


def load(settings: Settings, hours: int = 1, **options: Any) -> LoadSummary:
    options.setdefault("policy", FAST)
    return load_window(settings, T0, T0 + timedelta(hours=hours), **options)


def traffic() -> list[dict[str, Any]]:
    """Two hours of mixed points: sampled, legacy, invalid, a second rental, invalidations."""
    return [
        point(1),
        point(2, si=10),
        point(3, si=100, invalid=1.0),
        point(4, event_kind=""),
        point(5, legacy=True, route_id="route_old", renter_id="renter_old"),
        point(6, rental_id="rental_b", country="US", device_class="desktop", si=20),
        point(61, si=7),
        point(62, bot_bucket="verified_bot", asn="15169", si=3, invalid=1.0),
        invalidation(63, "2026-11-01T00:02:00Z", 1.0, si=10),
        invalidation(64, "2026-11-01T00:59:59Z", 2.0),
        invalidation(65, "2026-10-31T23:30:00Z", 1.0, si=4),
    ]


# --- Landing -------------------------------------------------------------------------------------


def test_sampled_points_land_as_weighted_sums(fresh_db: Settings, ae_reset: str) -> None:
    # given two hours of points with sample intervals of 1 to 100 and three invalidations
    points = traffic()
    write(ae_reset, fresh_db, points)

    # when the window is landed
    summary = load(fresh_db, hours=2)

    # then every hour and key holds the weighted sums computed from the points themselves
    assert landed_clicks(fresh_db) == expected_clicks(points)
    assert landed_invalidations(fresh_db) == expected_invalidations(points)
    assert summary.clicks == sum(row[0] for row in expected_clicks(points).values())
    assert [(row["status"], row["retries"]) for row in loads(fresh_db)] == [("succeeded", 0)] * 2


def test_landing_twice_leaves_identical_tables(fresh_db: Settings, ae_reset: str) -> None:
    # given a landed window
    write(ae_reset, fresh_db, traffic())
    first = load(fresh_db, hours=2)
    before = digest(fresh_db)

    # when it is landed again
    second = load(fresh_db, hours=2)

    # then the tables hold the same rows once, under the new loads only
    assert digest(fresh_db) == before
    assert landed_clicks(fresh_db) == expected_clicks(traffic())
    with psycopg.connect(fresh_db.database_url) as conn:
        ids = {row[0] for row in conn.execute("select load_id from raw.ae_clicks_hourly")}
    assert ids == set(second.load_ids) and not ids & set(first.load_ids)
    assert len(loads(fresh_db)) == 4


@pytest.mark.parametrize(
    ("faults", "extra_point", "error"),
    [
        ([FORBIDDEN], None, TerminalError),
        ([{"truncate_after_bytes": 300}, FORBIDDEN], None, TerminalError),
        ([], point(30, country="xx"), BadValueError),
    ],
    ids=["403", "cut-off-then-403", "bad-value"],
)
def test_failed_relanding_keeps_the_previous_landing(
    fresh_db: Settings, ae_reset: str, faults: list, extra_point: dict | None, error: type
) -> None:
    # given a landed slice
    write(ae_reset, fresh_db, traffic())
    load(fresh_db)
    before = digest(fresh_db)

    # when landing it again fails for good
    if extra_point:
        write(ae_reset, fresh_db, [extra_point])
    ae_admin.queue_faults(ae_reset, faults)
    with pytest.raises(error):
        load(fresh_db)

    # then the earlier landing is intact and the failure is on record
    assert digest(fresh_db) == before
    last = loads(fresh_db)[-1]
    assert last["status"] == "failed" and last["error"] and last["finished_at"]


# --- Faults and bad values -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "case",
    [
        ([{"status": 429, "retry_after": 1}], 1, None, "retry 1 in 1."),
        ([{"status": 500}], 1, None, "AE 500"),
        ([{"status": 503}], 1, None, "AE 503"),
        ([{"status": 504}], 1, None, "AE 504"),
        ([{"status": 500}, {"status": 503}, {"status": 504}], 3, None, "AE 504"),
        ([{"delay_s": 1.5}], 1, None, "did not answer in time"),
        ([{"truncate_after_bytes": 500}], 1, None, "AE connection failed"),
        ([{"truncate_after_bytes": 40}], 1, None, "RemoteProtocolError"),
        ([{"drop_rows": 1}], 1, None, "announced"),
        ([{"quote_int64": True}], 0, None, None),
        ([TOO_LARGE], 0, None, "too large for AE"),
        ([TOO_LARGE, TOO_LARGE], 0, None, "too large for AE"),
        ([{"status": 500}] * 4, None, TransientError, "gave up after 4 attempts"),
        ([TOO_LARGE] * 4, None, TerminalError, "too large even at"),
        ([FORBIDDEN], None, TerminalError, "AE 403"),
        ([{"status": 422, "body": "Input was invalid: bad"}], None, TerminalError, "AE 422"),
        (
            [{"rename_column": {"from": "clicks", "to": "clickz"}}],
            None,
            BadValueError,
            "column clicks: missing",
        ),
    ],
    ids=[
        "429-retry-after",
        "500",
        "503",
        "504",
        "500-503-504",
        "delay",
        "truncate-in-data",
        "truncate-in-head",
        "drop-rows",
        "quote-int64",
        "too-large-once",
        "too-large-twice",
        "500-until-give-up",
        "too-large-below-minimum",
        "403",
        "422",
        "rename-column",
    ],
)
def test_emulator_faults(
    fresh_db: Settings, ae_reset: str, caplog: pytest.LogCaptureFixture, case: tuple
) -> None:
    faults, retries, error, mentions = case
    # given a slice of points and faults queued for the next SQL requests
    points = traffic()[:6]
    write(ae_reset, fresh_db, points)
    ae_admin.queue_faults(ae_reset, faults)
    caplog.set_level(logging.INFO, logger="loaders")

    # when it is landed
    if error is None:
        load(fresh_db, read_timeout=0.5)
        # then it lands exactly once the faults are behind it
        assert landed_clicks(fresh_db) == expected_clicks(points)
        assert [(row["status"], row["retries"]) for row in loads(fresh_db)] == [
            ("succeeded", retries)
        ]
    else:
        with pytest.raises(error) as raised:
            load(fresh_db, read_timeout=0.5)
        # then nothing of it lands and the failure is logged with AE's reason
        assert landed_clicks(fresh_db) == {}
        assert loads(fresh_db)[-1]["status"] == "failed"
        assert mentions in str(raised.value)
    if mentions:
        assert mentions in caplog.text + "".join(str(row["error"]) for row in loads(fresh_db))


@pytest.mark.parametrize(
    ("bad", "column"),
    [
        (point(10, clicks=0.5), "clicks"),
        (point(10, clicks=-1.0, route_id="route_neg"), "clicks"),
        (point(10, referrer_domain="bad\x00host"), "referrer_domain"),
        (point(10, route_id="r" * 65), "route_id"),
        (point(10, event_kind="refund"), "event_kind"),
        (point(10, country="de"), "country"),
        (point(10, device_class="fridge"), "device_class"),
        (invalidation(10, "yesterday", 1.0), "original_click_at"),
        (invalidation(10, "2026-11-01T00:05:00+02:00", 1.0), "original_click_at"),
    ],
    ids=[
        "fractional",
        "negative",
        "nul",
        "too-long",
        "event-kind",
        "country",
        "device",
        "not-iso",
        "not-utc",
    ],
)
def test_bad_values_fail_the_slice_naming_row_and_column(
    fresh_db: Settings, ae_reset: str, bad: dict, column: str
) -> None:
    # given good points and one that breaks the contract
    write(ae_reset, fresh_db, [*traffic()[:6], bad])

    # when the slice is landed
    with pytest.raises(BadValueError) as raised:
        load(fresh_db)

    # then the error names slice, row and column, and nothing landed
    message = str(raised.value)
    label = re.escape("slice [2026-11-01T00:00Z, 2026-11-01T01:00Z): ")
    assert re.search(rf"{label}\w+ row \d+, column {column}:", message), message
    assert landed_clicks(fresh_db) == {} and landed_invalidations(fresh_db) == {}
    assert loads(fresh_db)[-1]["status"] == "failed"


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        (12, 12),
        (12.0, 12),
        ("12", 12),
        ("0", 0),
        (12.5, None),
        (-1, None),
        ("-1", None),
        ("1e3", None),
        (True, None),
        (None, None),
        (float("nan"), None),
    ],
)
def test_counts_are_parsed_exactly(value: Any, accepted: int | None) -> None:
    from loaders.landing import whole_count

    if accepted is None:
        with pytest.raises(ValueError):
            whole_count(value, 0)
    else:
        assert whole_count(value, 0) == accepted


# --- The streaming parser ------------------------------------------------------------------------


class _Body:
    """Stands in for an httpx response: only the text chunks are read."""

    def __init__(self, text: str, size: int) -> None:
        self.chunks = [text[i : i + size] for i in range(0, len(text), size)]
        self.headers: dict[str, str] = {}

    def iter_text(self) -> Iterator[str]:
        return iter(self.chunks)


BODY = json.dumps(
    {"meta": [{"name": "a", "type": "UInt64"}], "data": [{"a": n} for n in range(50)], "rows": 50},
    indent="\t",
)


@pytest.mark.parametrize("size", [1, 7, 4096])
def test_json_rows_decode_in_any_chunking(size: int) -> None:
    result = QueryResult(_Body(BODY, size), None)  # type: ignore[arg-type]
    assert [row["a"] for row in result.rows()] == list(range(50))
    assert result.meta == [{"name": "a", "type": "UInt64"}]


@pytest.mark.parametrize(
    "body",
    [BODY[: len(BODY) // 2], BODY[:-20], BODY.replace('"rows": 50', '"rows": 51'), BODY[:8]],
    ids=["half", "tail-cut", "row-missing", "head-cut"],
)
def test_json_rows_cut_off_are_transient(body: str) -> None:
    with pytest.raises(TransientError):
        list(QueryResult(_Body(body, 64), None).rows())  # type: ignore[arg-type]


# --- Secrets, locks, the window, the command -----------------------------------------------------


@pytest.mark.parametrize(
    "setup",
    ["403", "500s", "closed-port"],
)
def test_token_never_appears_in_logs_or_errors(
    fresh_db: Settings, ae_reset: str, caplog: pytest.LogCaptureFixture, setup: str
) -> None:
    # given a failing AE (the emulator refuses, or nothing listens)
    write(ae_reset, fresh_db, traffic()[:2])
    settings = fresh_db
    if setup == "403":
        ae_admin.queue_faults(ae_reset, [FORBIDDEN])
    elif setup == "500s":
        ae_admin.queue_faults(ae_reset, [{"status": 500}] * 4)
    else:
        settings = replace(fresh_db, ae_sql_url="http://127.0.0.1:9/sql")
    caplog.set_level(logging.DEBUG)

    # when a load fails
    with pytest.raises(Exception) as raised:
        load(settings)

    # then the token is nowhere: log, message, args, repr, nor the load log
    token = fresh_db.ae_api_token
    assert token and len(token) > 8
    seen = caplog.text + str(raised.value) + repr(raised.value.args) + repr(settings)
    seen += json.dumps(loads(fresh_db), default=str)
    assert token not in seen
    assert raised.value.__cause__ is None or token not in str(raised.value.__cause__)


@pytest.mark.parametrize(("lock_timeout", "second_fails"), [(0.2, True), (30.0, False)])
def test_two_loaders_never_interleave(
    fresh_db: Settings, ae_reset: str, lock_timeout: float, second_fails: bool
) -> None:
    # given a loader that holds the dataset's lock while AE is slow to answer
    points = traffic()
    write(ae_reset, fresh_db, points)
    ae_admin.queue_faults(ae_reset, [{"delay_s": 1.5}])
    first = threading.Thread(target=load, args=(fresh_db,))
    first.start()
    running = wait_for_running_load(fresh_db)

    # when a second loader starts on an overlapping window
    try:
        if second_fails:
            with pytest.raises(ConcurrentRunError) as raised:
                load(fresh_db, hours=2, lock_timeout=lock_timeout)
        else:
            load(fresh_db, hours=2, lock_timeout=lock_timeout)
    finally:
        first.join()

    # then it fails naming the running load, or waits and lands after the first
    statuses = [row["status"] for row in loads(fresh_db)]
    if second_fails:
        assert str(running) in str(raised.value) and "pid" in str(raised.value)
        assert statuses == ["succeeded"]
    else:
        assert statuses == ["succeeded"] * 3
        assert landed_clicks(fresh_db) == expected_clicks(points)


def wait_for_running_load(settings: Settings) -> Any:
    for _ in range(200):
        rows = [row for row in loads(settings) if row["status"] == "running"]
        if rows:
            return rows[0]["load_id"]
        time.sleep(0.02)
    raise AssertionError("the first loader never started")


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2026-11-01T00:30:00Z", "2026-11-01T02:00:00Z"),
        ("2026-11-01T02:00:00Z", "2026-11-01T01:00:00Z"),
        ("2026-11-01T01:00:00+01:30", "2026-11-01T02:00:00Z"),
        ("yesterday", "2026-11-01T02:00:00Z"),
    ],
)
def test_window_must_be_whole_utc_hours(fresh_db: Settings, start: str, end: str) -> None:
    with pytest.raises(TerminalError):
        load_window(fresh_db, start, end)
    assert loads(fresh_db) == []


def test_bad_dataset_name_never_reaches_ae(fresh_db: Settings) -> None:
    with pytest.raises(TerminalError, match="not a plain identifier"):
        load(replace(fresh_db, ae_dataset="clicks; DROP"))


def test_command_exit_codes(fresh_db: Settings, ae_reset: str) -> None:
    # given points in the first hour
    write(ae_reset, fresh_db, traffic()[:3])
    env = {**os.environ, "DATABASE_URL": str(fresh_db.database_url)}
    clicks = [sys.executable, "-m", "loaders.cli", "load"]

    # when the command lands it, and then is given a window off the hour
    good = subprocess.run(
        [*clicks, "--start", "2026-11-01T00:00:00Z", "--end", "2026-11-01T01:00:00Z"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    bad = subprocess.run(
        [*clicks, "--start", "2026-11-01T00:10:00Z", "--end", "2026-11-01T01:00:00Z"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )

    # then 0 with a line per slice and a summary, and 1 with a one-line reason
    assert good.returncode == 0, good.stderr
    assert "slice [2026-11-01T00:00Z, 2026-11-01T01:00Z): 1 click rows" in good.stderr
    assert "1 slices" in good.stderr
    assert bad.returncode == 1
    assert bad.stderr.strip().count("\n") == 0 and "not a whole UTC hour" in bad.stderr
    assert Secret(fresh_db.ae_api_token) not in good.stderr + bad.stderr
