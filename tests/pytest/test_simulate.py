"""`clicks simulate`: the system of record it writes, the points it sends, and its truth file.

The truth is checked against an independent recount: the AE emulator's SQL endpoint queried over
HTTP, attributed here with app.rentals, and the IVT policy read here from the seeds. AE's SQL API
binds no parameters, so the queries are text; every name in them comes from the contract or the
seeds, never from input (hence the S608 waivers).
"""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest

from loaders import cli
from loaders.contract import load_contract
from loaders.errors import ConfigError
from loaders.settings import Secret, Settings
from loaders.simulate import SimulationResult, read_truth, simulate

START = date(2026, 11, 1)
DAYS = 7
RENTALS = 20
CLICKS_PER_DAY = 600
SEEDS = Path(__file__).resolve().parents[2] / "seeds"


def run_small(
    settings: Settings, tmp_path: Path, *, seed: int = 7, name: str = "truth"
) -> SimulationResult:
    return simulate(
        settings,
        start=START,
        days=DAYS,
        rentals=RENTALS,
        seed=seed,
        truth_path=tmp_path / f"{name}.csv",
        clicks_per_day=CLICKS_PER_DAY,
    )


# -- reading AE and Postgres independently ------------------------------------------------------


def ae_rows(settings: Settings, query: str) -> list[dict]:
    response = httpx.post(
        settings.ae_sql_url,
        content=f"{query} FORMAT JSON",
        headers={"Authorization": f"Bearer {settings.ae_api_token}", "Content-Type": "text/plain"},
        timeout=60,
    )
    response.raise_for_status()
    return response.json()["data"]


def col(name: str) -> str:
    return load_contract().blob(name).column


def policy_sql() -> str:
    """SQL that is 1 when a click is invalid at click time: the Worker's flag or the seeds."""
    with (SEEDS / "ivt_bot_buckets.csv").open() as handle:
        buckets = [r["bot_bucket"] for r in csv.DictReader(handle) if r["is_invalid"] == "true"]
    with (SEEDS / "ivt_datacenter_asns.csv").open() as handle:
        asns = [r["asn"] for r in csv.DictReader(handle)]
    quoted = lambda values: ", ".join(f"'{value}'" for value in values)  # noqa: E731
    return (
        f"if(double2 = 1 OR {col('bot_bucket')} IN ({quoted(buckets)}) "
        f"OR {col('asn')} IN ({quoted(asns)}), 1, 0)"
    )


def click_hours(settings: Settings) -> list[dict]:
    """Clicks per route, renter, rental_id and hour, straight from the emulator."""
    return ae_rows(
        settings,
        f"SELECT {col('route_id')} AS route_id, {col('renter_id')} AS renter_id, "  # noqa: S608
        f"{col('rental_id')} AS rental_id, "
        "toStartOfInterval(timestamp, INTERVAL '1' HOUR) AS hour, "
        f"SUM(_sample_interval * double1) AS clicks, "
        f"SUM(_sample_interval * {policy_sql()}) AS invalid, max(_sample_interval) AS max_si "
        f"FROM {settings.ae_dataset} WHERE {col('event_kind')} != 'invalidation' "
        f"AND timestamp < toDateTime('{START + timedelta(days=DAYS)} 00:00:00') "
        "GROUP BY route_id, renter_id, rental_id, hour "
        "ORDER BY route_id, renter_id, rental_id, hour",
    )


def invalidations(settings: Settings) -> list[dict]:
    return ae_rows(
        settings,
        f"SELECT {col('rental_id')} AS rental_id, "  # noqa: S608
        f"{col('original_click_at')} AS click_hour, timestamp AS written, "
        "double1 AS clicks, double2 AS n, index1 AS idx "
        f"FROM {settings.ae_dataset} WHERE {col('event_kind')} = 'invalidation' "
        "ORDER BY rental_id, written",
    )


@dataclass(frozen=True)
class AppRental:
    rental_id: str
    route_id: str
    renter_id: str
    starts_at: datetime
    ends_at: datetime | None

    def overlaps(self, hour: datetime) -> bool:
        return self.starts_at < hour + timedelta(hours=1) and (
            self.ends_at is None or self.ends_at > hour
        )


def app_rentals(settings: Settings) -> list[AppRental]:
    with psycopg.connect(settings.database_url) as conn:
        rows = conn.execute(
            "select rental_id, route_id, renter_id, starts_at, ends_at from app.rentals"
        ).fetchall()
    return [AppRental(*row) for row in rows]


def parse_hour(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def recount(settings: Settings) -> tuple[dict, dict, set]:
    """(rental_id, day) -> [clicks, invalid]; (day, route_id) -> unattributed clicks; estimated."""
    rentals = app_rentals(settings)
    by_id = {rental.rental_id: rental for rental in rentals}
    attributed: dict[tuple[str, date], list[int]] = defaultdict(lambda: [0, 0])
    unattributed: dict[tuple[date, str], int] = defaultdict(int)
    estimated: set[tuple[str, date]] = set()
    for row in click_hours(settings):
        hour, clicks, invalid = parse_hour(row["hour"]), int(row["clicks"]), int(row["invalid"])
        if not row["renter_id"]:
            unattributed[(hour.date(), row["route_id"])] += clicks
            continue
        candidates = [
            rental for rental in rentals
            if rental.route_id == row["route_id"] and rental.renter_id == row["renter_id"]
            and rental.overlaps(hour)
        ]  # fmt: skip
        if row["rental_id"]:
            assert by_id[row["rental_id"]] in candidates, row
            candidates = [by_id[row["rental_id"]]]
        assert len(candidates) == 1, row
        key = (candidates[0].rental_id, hour.date())
        attributed[key][0] += clicks
        attributed[key][1] += invalid
        if int(row["max_si"]) > 1:
            estimated.add(key)
    return dict(attributed), dict(unattributed), estimated


# -- determinism --------------------------------------------------------------------------------


def every_point(settings: Settings) -> list[tuple]:
    """Every stored point, every column, in a total order."""
    columns = ["timestamp", "_sample_interval", "index1"]
    columns += [blob.column for blob in load_contract().blobs]
    columns += [double.column for double in load_contract().doubles]
    query = f"SELECT {', '.join(columns)} FROM {settings.ae_dataset}"  # noqa: S608
    rows = ae_rows(settings, query)
    return sorted(tuple(str(row[name]) for name in columns) for row in rows)


def test_same_seed_gives_identical_truth_and_points_and_another_seed_differs(
    fresh_db: Settings, ae_reset: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the same seed run twice (once through the CLI) and a third run with another seed
    monkeypatch.setenv("DATABASE_URL", fresh_db.database_url)
    argv = ["simulate", "--start", START.isoformat(), "--days", str(DAYS), "--rentals",
            str(RENTALS), "--seed", "7", "--clicks-per-day", str(CLICKS_PER_DAY), "--truth",
            str(tmp_path / "first.csv")]  # fmt: skip
    assert cli.main(argv) == 0
    first_points = every_point(fresh_db)
    run_small(fresh_db, tmp_path, seed=7, name="second")
    second_points = every_point(fresh_db)
    run_small(fresh_db, tmp_path, seed=8, name="other")

    # Then the truth files are byte-identical and so are the points the emulator holds
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    assert first.read_bytes() == second.read_bytes()
    assert (tmp_path / "first.unattributed.csv").read_bytes() == (
        tmp_path / "second.unattributed.csv"
    ).read_bytes()
    assert first_points == second_points and len(first_points) > 1000
    # And another seed gives other numbers
    assert (tmp_path / "other.csv").read_bytes() != first.read_bytes()
    assert every_point(fresh_db) != first_points


# -- the truth against a recount ----------------------------------------------------------------


def test_truth_matches_an_independent_recount_of_the_emulator(
    fresh_db: Settings, ae_reset: str, tmp_path: Path
) -> None:
    # Given a simulated week
    result = run_small(fresh_db, tmp_path)
    truth = read_truth(tmp_path / "truth.csv")

    # When AE is recounted and attributed with app.rentals, independently of the simulator
    attributed, unattributed, estimated = recount(fresh_db)
    final = {
        (r.rental_id, r.click_date): r
        for r in truth
        if r.cycle_date == START + timedelta(days=DAYS - 1)
    }

    # Then the final cycle's totals and invalid clicks per rental-day are the recount's
    assert {key: row.total_clicks for key, row in final.items()} == {
        key: clicks for key, (clicks, _) in attributed.items() if clicks > 0
    }
    assert {key: row.invalid_clicks for key, row in final.items()} == {
        key: invalid for key, (clicks, invalid) in attributed.items() if clicks > 0
    }
    assert {key for key, row in final.items() if row.is_estimated} == estimated
    # And per rental over the week, and per day over all rentals
    per_rental, per_day = defaultdict(int), defaultdict(int)
    for (rental_id, day), (clicks, _) in attributed.items():
        per_rental[rental_id] += clicks
        per_day[day] += clicks
    truth_rental, truth_day = defaultdict(int), defaultdict(int)
    for (rental_id, day), row in final.items():
        truth_rental[rental_id] += row.total_clicks
        truth_day[day] += row.total_clicks
    assert truth_rental == per_rental and truth_day == per_day
    # And the unattributed side file holds the clicks no rental matches
    with (tmp_path / "truth.unattributed.csv").open() as handle:
        side = {(date.fromisoformat(r["click_date"]), r["route_id"]): int(r["clicks"])
                for r in csv.DictReader(handle)}  # fmt: skip
    assert side == unattributed and sum(side.values()) == result.unattributed_clicks > 0
    # And valid clicks per customer at the last cycle are what the result promises
    customers = defaultdict(int)
    for row in final.values():
        customers[row.stripe_customer_id] += row.valid_clicks
    assert dict(customers) == result.expected_valid_by_customer
    # And earlier cycles already saw each day's final totals: only invalidations arrive late
    for row in truth:
        final_row = final[(row.rental_id, row.click_date)]
        assert (row.total_clicks, row.invalid_clicks) == (
            final_row.total_clicks,
            final_row.invalid_clicks,
        )


def test_late_invalidations_per_cycle_are_those_written_before_the_cycle_ends(
    fresh_db: Settings, ae_reset: str, tmp_path: Path
) -> None:
    # Given a simulated week and its invalidation points as the emulator holds them
    run_small(fresh_db, tmp_path)
    truth = read_truth(tmp_path / "truth.csv")
    points = invalidations(fresh_db)

    # When each cycle D sums the invalidations written before D+1 00:00 UTC per rental-day
    expected: dict[tuple[date, str, date], int] = defaultdict(int)
    for offset in range(DAYS):
        cycle = START + timedelta(days=offset)
        horizon = datetime.combine(cycle + timedelta(days=1), datetime.min.time(), UTC)
        for point in points:
            if parse_hour(point["written"]) < horizon:
                day = datetime.fromisoformat(point["click_hour"]).date()
                expected[(cycle, point["rental_id"], day)] += int(point["n"])

    # Then the truth's late_invalidated_clicks are exactly those sums
    observed = {(r.cycle_date, r.rental_id, r.click_date): r.late_invalidated_clicks
                for r in truth if r.late_invalidated_clicks}  # fmt: skip
    assert observed == dict(expected) and observed
    assert all(r.valid_clicks == r.total_clicks - r.invalid_clicks - r.late_invalidated_clicks
               for r in truth)  # fmt: skip


# -- what the traffic must contain --------------------------------------------------------------


def test_late_invalidations_reach_beyond_the_lookback_and_never_exceed_valid_clicks(
    fresh_db: Settings, ae_reset: str, tmp_path: Path
) -> None:
    # Given a simulated week
    run_small(fresh_db, tmp_path)
    attributed, _, _ = recount(fresh_db)
    points = invalidations(fresh_db)

    # When each invalidation is placed against the day it concerns
    delays = set()
    taken: dict[tuple[str, date], int] = defaultdict(int)
    for point in points:
        click_hour = datetime.fromisoformat(point["click_hour"])
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:00:00Z", point["click_hour"])
        assert point["idx"] == point["rental_id"] and int(point["clicks"]) == 0
        delay = parse_hour(point["written"]) - click_hour
        assert timedelta(days=1) <= delay <= timedelta(days=6)
        delays.add((parse_hour(point["written"]).date() - click_hour.date()).days)
        taken[(point["rental_id"], click_hour.date())] += int(point["n"])

    # Then some land inside a 3-day lookback and some beyond it
    assert any(days <= 2 for days in delays) and any(days >= 3 for days in delays)
    # And none takes more than the clicks still valid that day
    for key, clicks in taken.items():
        total, invalid = attributed[key]
        assert clicks <= total - invalid, key


def test_heavy_hitters_are_written_sampled(
    fresh_db: Settings, ae_reset: str, tmp_path: Path
) -> None:
    # Given a simulated week
    run_small(fresh_db, tmp_path)

    # When the sampled points are read back
    rows = ae_rows(
        fresh_db,
        "SELECT _sample_interval AS si, double1 AS clicks, double2 AS invalid, "  # noqa: S608
        f"count() AS points FROM {fresh_db.ae_dataset} WHERE _sample_interval > 1 "
        "GROUP BY si, clicks, invalid",
    )

    # Then they exist, each point is one click standing for sample_interval clicks
    assert rows
    assert {int(row["clicks"]) for row in rows} == {1}
    assert {int(row["invalid"]) for row in rows} <= {0, 1}
    assert any(row.is_estimated for row in read_truth(tmp_path / "truth.csv"))


def test_old_worker_points_fill_only_the_legacy_blobs(
    fresh_db: Settings, ae_reset: str, tmp_path: Path
) -> None:
    # Given a simulated week
    run_small(fresh_db, tmp_path)
    contract = load_contract()
    newer = [blob.column for blob in contract.blobs[contract.legacy_blob_count :]]

    # When points without a rental_id but with a renter are counted
    rows = ae_rows(
        fresh_db,
        f"SELECT count() AS points, SUM(length({' || '.join(newer)})) AS newer_chars "  # noqa: S608
        f"FROM {fresh_db.ae_dataset} WHERE {col('rental_id')} = '' AND {col('renter_id')} != ''",
    )

    # Then there are some, and every blob after the legacy eight is empty
    assert int(rows[0]["points"]) > 0
    assert int(rows[0]["newer_chars"]) == 0


# -- the system of record -----------------------------------------------------------------------

INVARIANTS = [
    # (what must hold, SQL counting the rows that prove or break it, expectation)
    ("no route has two overlapping rentals",
     "select count(*) from app.rentals a join app.rentals b on a.route_id = b.route_id "
     "and a.rental_id < b.rental_id and tstzrange(a.starts_at, a.ends_at) "
     "&& tstzrange(b.starts_at, b.ends_at)", "zero"),
    ("no renter rents one route twice within an hour",
     "select count(*) from app.rentals a join app.rentals b on a.route_id = b.route_id "
     "and a.renter_id = b.renter_id and a.rental_id <> b.rental_id "
     "and b.starts_at >= a.ends_at and b.starts_at < a.ends_at + interval '1 hour'", "zero"),
    ("every renter has a Stripe customer id",
     "select count(*) from app.renters where stripe_customer_id is null "
     "or stripe_customer_id !~ '^cus_[A-Za-z0-9]{14}$'", "zero"),
    ("Stripe customer ids are unique",
     "select count(*) - count(distinct stripe_customer_id) from app.renters", "zero"),
    ("every rental's owner is its route's owner",
     "select count(*) from app.rentals join app.routes using (route_id) "
     "where app.rentals.owner_id <> app.routes.owner_id", "zero"),
    ("routes are re-rented to another renter at the instant the last rental ends",
     "select count(*) from app.rentals a join app.rentals b on a.route_id = b.route_id "
     "and b.starts_at = a.ends_at and a.renter_id <> b.renter_id", "some"),
    ("routes stand idle between rentals",
     "select count(*) from app.rentals a join app.rentals b on a.route_id = b.route_id "
     "and b.starts_at > a.ends_at", "some"),
    ("rentals start mid-hour",
     "select count(*) from app.rentals where extract(minute from starts_at) <> 0", "some"),
    ("rentals end mid-hour",
     "select count(*) from app.rentals where extract(minute from ends_at) <> 0", "some"),
    ("some rentals are open-ended and active",
     "select count(*) from app.rentals where ends_at is null and status = 'active'", "some"),
    ("ended rentals say so",
     "select count(*) from app.rentals where ends_at <= %(end)s and status <> 'ended'", "zero"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("invariant", "query", "expect"), INVARIANTS, ids=[i[0] for i in INVARIANTS]
)
@pytest.mark.usefixtures("ae_reset")
def test_system_of_record_invariants(
    fresh_db: Settings, tmp_path: Path, invariant: str, query: str, expect: str
) -> None:
    # Given a simulated week
    run_small(fresh_db, tmp_path)

    # When the app tables are queried
    end = datetime.combine(START + timedelta(days=DAYS), datetime.min.time(), UTC)
    with psycopg.connect(fresh_db.database_url) as conn:
        (count,) = conn.execute(query, {"end": end}).fetchone()

    # Then the invariant holds
    assert (count == 0) if expect == "zero" else (count > 0), invariant


def test_a_second_run_replaces_the_system_of_record(
    fresh_db: Settings, ae_reset: str, tmp_path: Path
) -> None:
    # Given two runs with different sizes
    simulate(fresh_db, start=START, days=2, rentals=30, seed=1, clicks_per_day=50)
    result = run_small(fresh_db, tmp_path)

    # Then only the second run's rows remain
    with psycopg.connect(fresh_db.database_url) as conn:
        (rentals,) = conn.execute("select count(*) from app.rentals").fetchone()
    assert rentals == result.rentals == RENTALS


@pytest.mark.parametrize(
    ("variable", "url"),
    [
        ("DATABASE_URL", "postgresql://app:pw@db.example.com:5432/prod"),
        ("DATABASE_URL", "postgresql:///prod?host=db.example.com&password=pw"),
        ("AE_SQL_URL", "https://api.cloudflare.com/client/v4/accounts/x/analytics_engine/sql"),
    ],
)
def test_refuses_to_run_against_a_remote_service(
    settings: Settings, variable: str, url: str
) -> None:
    # Given settings where one service is not on this machine
    if variable == "DATABASE_URL":
        remote = replace(settings, database_url=Secret(url))
    else:
        remote = replace(settings, ae_sql_url=url)

    # Then simulate refuses before touching anything, naming the variable but not the password
    with pytest.raises(ConfigError, match=variable) as caught:
        simulate(remote, start=START, days=1, rentals=1, seed=1)
    assert "pw" not in str(caught.value)
