"""`clicks simulate`: a system of record, a fortnight of click traffic, and the truth about both.

The simulator owns the local ``app`` schema: it replaces ``app.routes``, ``app.renters`` and
``app.rentals`` on every run, so it refuses a non-loopback ``DATABASE_URL`` (production's system of
record belongs to the application) unless ``--allow-remote`` says otherwise. Clicks go to the AE
emulator through its emulator-only write endpoint, laid out by the clicks contract. Because the
simulator knows which rental every click was generated for, it can write the exact numbers each
nightly cycle must produce (docs/simulator.md).

Everything random comes from one ``random.Random(seed)``, and nothing written depends on the wall
clock, so a seed always gives the same rows, the same points and a byte-identical truth file.
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
import random
import string
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from psycopg import sql

from loaders.contract import Contract, load_contract
from loaders.db import connect, ensure_schemas
from loaders.errors import ConfigError, TerminalError
from loaders.settings import Settings, host_of, is_local, project_dir

log = logging.getLogger(__name__)

DAY_S = 86_400
HOUR_S = 3_600
BATCH_POINTS = 20_000
DEFAULT_CLICKS_PER_DAY = 10_000

TRUTH_HEADER = (
    "cycle_date",
    "rental_id",
    "click_date",
    "stripe_customer_id",
    "total_clicks",
    "invalid_clicks",
    "late_invalidated_clicks",
    "valid_clicks",
    "is_estimated",
)
UNATTRIBUTED_HEADER = ("click_date", "route_id", "clicks")

# Share of traffic per UTC hour: a trough before dawn in Europe, a peak in the European evening
# when the Americas are awake too.
DIURNAL = tuple(0.4 + 0.6 * math.exp(-(((hour - 17) / 5.0) ** 2)) for hour in range(24))

# Rentals: durations log-uniform between two hours (so one renter never rents one route twice
# within an hour) and six days; a gap of zero hands the route straight to another renter.
MIN_RENTAL_S = 2 * HOUR_S
MAX_RENTAL_S = 6 * DAY_S
OPEN_ENDED_SHARE = 0.1
RERENT_SHARE = 0.4
IDLE_GAP_S = (15 * 60, 2 * DAY_S)
IDLE_ROUTE_WEIGHT = 0.1  # a route without a rental still gets some stray clicks
PARETO_ALPHA = 1.16  # the 80/20 shape: a few rentals get most clicks

OLD_WORKER_SHARE = 0.08
INVALIDATED_DAY_SHARE = 0.4
# Whole days between a click hour and its invalidation, and their weights: most arrive within
# the lookback, about a third beyond it. An hour to a day more is added, so every invalidation
# lands 1 to 6 days after the clicks it names.
INVALIDATION_DELAY_DAYS = ((1, 40), (2, 25), (3, 15), (4, 10), (5, 10))
PROFILE_POOL = 4_096

COUNTRIES = (
    ("US", 30), ("GB", 9), ("DE", 9), ("FR", 7), ("IN", 8), ("BR", 6), ("JP", 5), ("CA", 4),
    ("AU", 3), ("NL", 3), ("ES", 3), ("IT", 3), ("KR", 2), ("MX", 3), ("PL", 2), ("SE", 2),
)  # fmt: skip
RESIDENTIAL_ASNS = (
    "7922", "701", "7018", "3320", "3215", "2856", "12322", "6830", "4134", "9121", "17676",
    "4766", "28573", "55836", "1221", "5089",
)  # fmt: skip
REFERRERS = (
    ("", 30), ("google.com", 25), ("bing.com", 5), ("duckduckgo.com", 3), ("facebook.com", 8),
    ("t.co", 6), ("reddit.com", 5), ("news.ycombinator.com", 2), ("linkedin.com", 4),
    ("instagram.com", 5), ("youtube.com", 4), ("newsletter.example.org", 3),
)  # fmt: skip
# bot bucket -> (share of clicks, P(Worker flags it), P(data-centre ASN))
BUCKETS = {
    "likely_human": (0.78, 0.01, 0.02),
    "unknown": (0.07, 0.03, 0.10),
    "likely_automated": (0.06, 0.30, 0.40),
    "automated": (0.05, 0.50, 0.60),
    "verified_bot": (0.04, 0.10, 0.70),
}
HUMAN_DEVICES = (("desktop", 45), ("mobile", 45), ("tablet", 8), ("other", 2))


# -- what is simulated --------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    route_id: str
    owner_id: str
    host: str
    path: str
    created_at: datetime


@dataclass(frozen=True)
class Renter:
    renter_id: str
    name: str
    stripe_customer_id: str


@dataclass(frozen=True)
class Rental:
    rental_id: str
    route_id: str
    renter_id: str
    owner_id: str
    start_s: int
    end_s: int | None  # epoch seconds; None = open-ended
    status: str


@dataclass(frozen=True)
class Policy:
    """The IVT policy as the seeds state it, read independently of dbt."""

    invalid_buckets: tuple[str, ...]
    datacenter_asns: tuple[str, ...]
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Profile:
    """One visitor shape: the blobs it fills and how the click is judged."""

    fields: tuple[tuple[int, str], ...]
    legacy_fields: tuple[tuple[int, str], ...]
    flagged: bool
    invalid: bool


@dataclass
class World:
    routes: list[Route]
    renters: list[Renter]
    rentals: list[Rental]
    weights: dict[str, float]  # rental_id -> popularity
    sample_intervals: dict[str, int]  # heavy hitters' rental_id -> sample_interval

    def rentals_by_route(self) -> dict[str, list[Rental]]:
        by_route: dict[str, list[Rental]] = {route.route_id: [] for route in self.routes}
        for rental in self.rentals:
            by_route[rental.route_id].append(rental)
        for rentals in by_route.values():
            rentals.sort(key=lambda rental: rental.start_s)
        return by_route


@dataclass
class Tally:
    """Exact counts as the simulator wrote them, weighted by sample_interval."""

    total: dict[tuple[str, date], int] = field(default_factory=dict)
    invalid: dict[tuple[str, date], int] = field(default_factory=dict)
    estimated: dict[tuple[str, date], bool] = field(default_factory=dict)
    hour_valid: dict[tuple[str, int], int] = field(default_factory=dict)
    unattributed: dict[tuple[date, str], int] = field(default_factory=dict)
    # (rental_id, click day) -> [(write epoch seconds, clicks declared invalid)]
    invalidations: dict[tuple[str, date], list[tuple[int, int]]] = field(default_factory=dict)
    click_points: int = 0
    clicks: int = 0


@dataclass(frozen=True)
class TruthRow:
    cycle_date: date
    rental_id: str
    click_date: date
    stripe_customer_id: str
    total_clicks: int
    invalid_clicks: int
    late_invalidated_clicks: int
    valid_clicks: int
    is_estimated: bool

    def as_csv(self) -> list[str]:
        return [
            self.cycle_date.isoformat(),
            self.rental_id,
            self.click_date.isoformat(),
            self.stripe_customer_id,
            str(self.total_clicks),
            str(self.invalid_clicks),
            str(self.late_invalidated_clicks),
            str(self.valid_clicks),
            "true" if self.is_estimated else "false",
        ]


@dataclass
class SimulationResult:
    """What one run wrote. Clicks are weighted by sample_interval; points are rows in AE.

    ``invalidation_points`` and ``invalidated_clicks`` include invalidations written after the
    window ends, which no cycle of the truth sees. ``expected_valid_by_customer`` is the last
    cycle's valid clicks per Stripe customer.
    """

    points_written: int
    click_points: int
    clicks: int
    unattributed_clicks: int
    invalidation_points: int
    invalidated_clicks: int
    routes: int
    renters: int
    rentals: int
    seconds: float
    expected_valid_by_customer: dict[str, int]
    truth_rows: list[TruthRow]
    unattributed: dict[tuple[date, str], int]
    truth_path: Path | None = None
    unattributed_path: Path | None = None

    @property
    def points_per_second(self) -> float:
        return self.points_written / self.seconds if self.seconds > 0 else 0.0

    def final_rows(self) -> list[TruthRow]:
        """The truth rows of the last cycle: every rental-day as the fortnight leaves it."""
        last = max((row.cycle_date for row in self.truth_rows), default=None)
        return [row for row in self.truth_rows if row.cycle_date == last]


# -- entry point --------------------------------------------------------------------------------


def simulate(
    settings: Settings,
    *,
    start: date,
    days: int,
    rentals: int,
    seed: int,
    truth_path: Path | None = None,
    clicks_per_day: int = DEFAULT_CLICKS_PER_DAY,
    allow_remote: bool = False,
    batch_points: int = BATCH_POINTS,
    append: bool = False,
) -> SimulationResult:
    """Fill app.*, write the traffic to the AE emulator and (optionally) the truth files."""
    if days < 1 or rentals < 1 or clicks_per_day < 0:
        raise ConfigError("simulate needs --days >= 1, --rentals >= 1 and --clicks-per-day >= 0")
    _require_loopback(settings.database_url, "DATABASE_URL", allow_remote)
    ae_base = ae_base_url(settings.ae_sql_url)
    _require_loopback(ae_base, "AE_SQL_URL", allow_remote)
    began = time.perf_counter()

    rng = random.Random(seed)
    start_s = _epoch(start)
    world = build_world(rng, start_s, days, rentals)
    write_system_of_record(settings, world)

    if not append:
        _reset_emulator(ae_base)
    tally = Tally()
    with _PointSink(ae_base, settings.ae_dataset, batch_points) as sink:
        traffic = Traffic(
            rng, world, policy=_read_policy(), contract=load_contract(), sink=sink, tally=tally
        )
        traffic.run(start_s, days, clicks_per_day)
    seconds = time.perf_counter() - began

    result = _result(world, tally, start=start, days=days, seconds=seconds, written=sink.written)
    if truth_path is not None:
        result.truth_path, result.unattributed_path = write_truth(result, truth_path)
    log.info(
        "simulated %d clicks in %d points (%d invalidations) in %.1f s: %.0f points/s",
        result.clicks, result.points_written, result.invalidation_points, seconds,
        result.points_per_second,
    )  # fmt: skip
    return result


def _reset_emulator(ae_base: str) -> None:
    from loaders.emulators.ae_admin import reset

    # Clicks of an earlier run would make this run's truth wrong, so the emulator starts empty.
    reset(ae_base)
    log.info("AE emulator reset at %s", ae_base)


def ae_base_url(ae_sql_url: str) -> str:
    """scheme://host:port of the AE SQL URL: where the emulator's own endpoints live."""
    parts = urlsplit(ae_sql_url)
    if not parts.scheme or not parts.netloc:
        raise ConfigError("AE_SQL_URL is not set or not a URL: run `clicks up` or export it")
    return f"{parts.scheme}://{parts.netloc}"


def _require_loopback(url: str, name: str, allow_remote: bool) -> None:
    if allow_remote or is_local(url):
        return
    host = host_of(url)
    raise ConfigError(
        f"{name} points at {host}, not this machine: simulate truncates app.* and writes "
        "fake clicks, so it only runs against the local stack (`clicks up`); pass "
        "--allow-remote only for a disposable remote copy"
    )


def _epoch(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def _day_of(epoch_s: int) -> date:
    return datetime.fromtimestamp(epoch_s, UTC).date()


def _utc(epoch_s: int) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC)


# -- the system of record -----------------------------------------------------------------------


def build_world(rng: random.Random, start_s: int, days: int, rentals: int) -> World:
    end_s = start_s + days * DAY_S
    renters = _make_renters(rng, max(2, math.ceil(rentals / 2.5)))
    routes, made = _make_rentals(rng, renters, start_s=start_s, end_s=end_s, wanted=rentals)
    weights = {rental.rental_id: rng.paretovariate(PARETO_ALPHA) for rental in made}
    return World(routes, renters, made, weights, _pick_heavy_hitters(weights, rentals))


def _make_renters(rng: random.Random, count: int) -> list[Renter]:
    alphabet = string.ascii_letters + string.digits
    seen: set[str] = set()
    renters = []
    for number in range(1, count + 1):
        customer = "cus_" + "".join(rng.choice(alphabet) for _ in range(14))
        while customer in seen:
            customer = "cus_" + "".join(rng.choice(alphabet) for _ in range(14))
        seen.add(customer)
        renters.append(Renter(f"rn_{number:05d}", f"Renter {number}", customer))
    return renters


def _new_route(rng: random.Random, routes: list[Route], start_s: int, owners: int) -> Route:
    number = len(routes) + 1
    route = Route(
        route_id=f"rt_{number:05d}",
        owner_id=f"ow_{rng.randrange(owners) + 1:04d}",
        host=f"go{number % 7}.clicks.example",
        path=f"/r/{number:05d}",
        created_at=_utc(start_s - 30 * DAY_S),
    )
    routes.append(route)
    return route


def _make_rentals(
    rng: random.Random, renters: list[Renter], *, start_s: int, end_s: int, wanted: int
) -> tuple[list[Route], list[Rental]]:
    """Lay rentals end to end on each route's timeline: never overlapping, sometimes gapped.

    The route whose timeline is furthest behind gets the next rental, and there are about as
    many routes as fill the window with the rentals wanted, so the window stays busy to its end.
    """
    owners = max(1, wanted // 12)
    route_count = max(2, round(wanted * _MEAN_CYCLE_S / (end_s - start_s + DAY_S)))
    routes: list[Route] = []
    cursor: dict[str, int] = {}
    last_renter: dict[str, str] = {}
    rentals: list[Rental] = []
    while len(rentals) < wanted:
        open_routes = [route for route in routes if cursor[route.route_id] < end_s]
        if not open_routes or len(routes) < route_count:
            route = _new_route(rng, routes, start_s, owners)
            cursor[route.route_id] = _first_start(rng, start_s, end_s)
        else:
            route = min(open_routes, key=lambda route: cursor[route.route_id])
        renter = _other_renter(rng, renters, last_renter.get(route.route_id))
        rental, next_start = _next_rental(rng, route, renter, cursor[route.route_id], end_s)
        rentals.append(replace(rental, rental_id=f"rl_{len(rentals) + 1:06d}"))
        cursor[route.route_id] = next_start
        last_renter[route.route_id] = renter.renter_id
    return routes, _ensure_open_ended(rentals)


def _log_uniform_mean(low: float, high: float) -> float:
    return (high - low) / math.log(high / low)


# A rental and the idle gap after it, on average: how much of a route's timeline one rental uses.
_MEAN_CYCLE_S = _log_uniform_mean(MIN_RENTAL_S, MAX_RENTAL_S) + (
    1 - RERENT_SHARE
) * _log_uniform_mean(*IDLE_GAP_S)


def _first_start(rng: random.Random, start_s: int, end_s: int) -> int:
    # Most routes are rented when the window opens; some wait idle for their first renter.
    if rng.random() < 0.8:
        return start_s - rng.randrange(2 * DAY_S // 60) * 60
    return start_s + rng.randrange((end_s - start_s) // 2 // 60) * 60


def _other_renter(rng: random.Random, renters: list[Renter], previous: str | None) -> Renter:
    while True:
        renter = renters[rng.randrange(len(renters))]
        if renter.renter_id != previous:
            return renter


def _next_rental(
    rng: random.Random, route: Route, renter: Renter, start: int, end_s: int
) -> tuple[Rental, int]:
    """One rental from ``start``; returns it and when the route's next rental may start."""
    duration = math.exp(rng.uniform(math.log(MIN_RENTAL_S), math.log(MAX_RENTAL_S)))
    ends: int | None = start + max(MIN_RENTAL_S, int(duration) // 60 * 60)
    if rng.random() < OPEN_ENDED_SHARE:
        ends = None
    if rng.random() < RERENT_SHARE:
        gap = 0
    else:
        gap = int(math.exp(rng.uniform(*(math.log(s) for s in IDLE_GAP_S)))) // 60 * 60
    status = "ended" if ends is not None and ends <= end_s else "active"
    rental = Rental("", route.route_id, renter.renter_id, route.owner_id, start, ends, status)
    return rental, (end_s if ends is None else ends + gap)


def _ensure_open_ended(rentals: list[Rental]) -> list[Rental]:
    """Guarantee at least one open-ended rental: the route's last one, so nothing overlaps."""
    if any(rental.end_s is None for rental in rentals):
        return rentals
    last_on_route: dict[str, int] = {}
    for position, rental in enumerate(rentals):
        last_on_route[rental.route_id] = position
    position = max(last_on_route.values(), key=lambda index: rentals[index].end_s or 0)
    rentals[position] = replace(rentals[position], end_s=None, status="active")
    return rentals


def _pick_heavy_hitters(weights: dict[str, float], rentals: int) -> dict[str, int]:
    """The most popular rentals are written sampled, as AE does for its busiest index values."""
    ranked = sorted(weights, key=lambda rental_id: (-weights[rental_id], rental_id))
    count = max(1, rentals // 40)
    heavy = {rental_id: 10 for rental_id in ranked[:count]}
    heavy[ranked[0]] = 100 if rentals >= 40 else 10
    return heavy


def write_system_of_record(settings: Settings, world: World) -> None:
    """Replace every row of app.routes, app.renters and app.rentals in one transaction."""
    routes = [(r.route_id, r.owner_id, r.host, r.path, r.created_at) for r in world.routes]
    renters = [(r.renter_id, r.name, r.stripe_customer_id) for r in world.renters]
    rentals = [
        (r.rental_id, r.route_id, r.renter_id, r.owner_id, _utc(r.start_s),
         None if r.end_s is None else _utc(r.end_s), r.status)
        for r in world.rentals
    ]  # fmt: skip
    with connect(settings) as conn:
        ensure_schemas(conn, ("app",))
        conn.execute("truncate app.rentals, app.renters, app.routes")
        with conn.cursor() as cur:
            for table, rows in (("routes", routes), ("renters", renters), ("rentals", rentals)):
                statement = sql.SQL("copy {} ({}) from stdin").format(
                    sql.Identifier("app", table),
                    sql.SQL(", ").join(map(sql.Identifier, APP_COLUMNS[table])),
                )
                with cur.copy(statement) as copy:
                    for row in rows:
                        copy.write_row(row)
        conn.commit()
    log.info(
        "app.* replaced: %d routes, %d renters, %d rentals", *map(len, (routes, renters, rentals))
    )


APP_COLUMNS = {
    "routes": ("route_id", "owner_id", "host", "path", "created_at"),
    "renters": ("renter_id", "name", "stripe_customer_id"),
    "rentals": (
        "rental_id", "route_id", "renter_id", "owner_id", "starts_at", "ends_at", "status",
    ),
}  # fmt: skip


# -- traffic ------------------------------------------------------------------------------------


def _read_policy() -> Policy:
    seeds = project_dir() / "seeds"
    with (seeds / "ivt_bot_buckets.csv").open(newline="") as handle:
        buckets = tuple(
            row["bot_bucket"] for row in csv.DictReader(handle)
            if row["is_invalid"].strip().lower() == "true"
        )  # fmt: skip
    with (seeds / "ivt_datacenter_asns.csv").open(newline="") as handle:
        asns = tuple(row["asn"].strip() for row in csv.DictReader(handle))
    with (seeds / "ivt_reason_codes.csv").open(newline="") as handle:
        reasons = tuple(row["invalidation_reason"].strip() for row in csv.DictReader(handle))
    return Policy(buckets, asns, reasons)


def make_profiles(rng: random.Random, policy: Policy, contract: Contract) -> list[Profile]:
    """A pool of visitor shapes; each click draws one, which keeps the hot loop cheap."""
    _check_vocabulary(contract)
    position = {name: contract.blob_position(name) - 1 for name in _PROFILE_BLOBS}
    countries, country_weights = zip(*COUNTRIES, strict=True)
    referrers, referrer_weights = zip(*REFERRERS, strict=True)
    bucket_names = list(BUCKETS)
    bucket_weights = [share for share, _, _ in BUCKETS.values()]
    profiles = []
    for _ in range(PROFILE_POOL):
        bucket = rng.choices(bucket_names, bucket_weights)[0]
        _, p_flag, p_datacenter = BUCKETS[bucket]
        datacenter = rng.random() < p_datacenter
        asn = rng.choice(policy.datacenter_asns if datacenter else RESIDENTIAL_ASNS)
        values = {
            "country": rng.choices(countries, country_weights)[0],
            "asn": asn,
            "bot_bucket": bucket,
            "referrer_domain": rng.choices(referrers, referrer_weights)[0],
            "user_agent_hash": f"{rng.getrandbits(64):016x}",
            "device_class": _device(rng, bucket),
        }
        flagged = rng.random() < p_flag
        fields = tuple((position[name], value) for name, value in values.items())
        legacy = tuple(pair for pair in fields if pair[0] < contract.legacy_blob_count)
        invalid = flagged or bucket in policy.invalid_buckets or asn in policy.datacenter_asns
        profiles.append(Profile(fields, legacy, flagged, invalid))
    return profiles


def _check_vocabulary(contract: Contract) -> None:
    """The buckets and devices simulated here must be exactly the contract's."""
    for name, simulated in (
        ("bot_bucket", set(BUCKETS)),
        ("device_class", {device for device, _ in HUMAN_DEVICES} | {"bot"}),
    ):
        allowed = set(contract.blob(name).values)
        if simulated != allowed:
            raise TerminalError(
                f"the simulator's {name} values {sorted(simulated)} differ from the clicks "
                f"contract's {sorted(allowed)}: update loaders/simulate.py to the contract"
            )


_PROFILE_BLOBS = (
    "country", "asn", "bot_bucket", "referrer_domain", "user_agent_hash", "device_class",
)  # fmt: skip


def _device(rng: random.Random, bucket: str) -> str:
    if bucket in ("automated", "verified_bot"):
        return "bot" if rng.random() < 0.8 else "other"
    devices, weights = zip(*HUMAN_DEVICES, strict=True)
    return rng.choices(devices, weights)[0]


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 40:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    # Knuth's product of uniforms: exact and fast for small means.
    limit, count, product = math.exp(-lam), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


_MMSS = tuple(f"{second // 60:02d}:{second % 60:02d}Z" for second in range(HOUR_S))


@dataclass(frozen=True)
class Segment:
    """Part of one route-hour with one tenant (or none): seconds [low, high) after hour_s."""

    route: Route
    rental: Rental | None
    hour_s: int
    prefix: str  # the hour as ISO text, "2026-11-02T13:"
    low: int
    high: int
    interval: int


class Traffic:
    """Generates every click and invalidation point and keeps the exact tally."""

    def __init__(
        self,
        rng: random.Random,
        world: World,
        *,
        policy: Policy,
        contract: Contract,
        sink: _PointSink,
        tally: Tally,
    ) -> None:
        self.rng, self.world, self.policy, self.sink, self.tally = rng, world, policy, sink, tally
        self.contract = contract
        self.profiles = make_profiles(rng, policy, contract)
        self.by_route = world.rentals_by_route()
        self.routes = {route.route_id: route for route in world.routes}
        self.rentals = {rental.rental_id: rental for rental in world.rentals}
        self.pos = {blob.name: contract.blob_position(blob.name) - 1 for blob in contract.blobs}

    def run(self, start_s: int, days: int, clicks_per_day: int) -> None:
        scale = clicks_per_day / max(self._mean_weight(start_s, days), 1e-9) / sum(DIURNAL)
        for offset in range(days):
            day_s = start_s + offset * DAY_S
            day = _day_of(day_s)
            points, clicks = self.sink.pending, self.tally.clicks
            # Weekends are quieter; no two weekdays are quite alike.
            multiplier = (0.85 if day.weekday() >= 5 else 1.0) * self.rng.uniform(0.92, 1.08)
            for hour in range(24):
                self._hour(day_s + hour * HOUR_S, scale * multiplier * DIURNAL[hour])
            self._invalidations(day)
            log.info(
                "day %s: %d points, %d clicks",
                day.isoformat(),
                self.sink.pending - points,
                self.tally.clicks - clicks,
            )

    def _mean_weight(self, start_s: int, days: int) -> float:
        """Average popularity on the air at any instant, so clicks_per_day comes out on average."""
        window = days * DAY_S
        end_s = start_s + window
        busy: dict[str, int] = {route.route_id: 0 for route in self.world.routes}
        weighted = 0.0
        for rental in self.world.rentals:
            stop = end_s if rental.end_s is None else min(rental.end_s, end_s)
            overlap = max(0, stop - max(rental.start_s, start_s))
            weighted += self.world.weights[rental.rental_id] * overlap
            busy[rental.route_id] += overlap
        idle = sum(window - seconds for seconds in busy.values())
        return (weighted + IDLE_ROUTE_WEIGHT * idle) / window

    def _hour(self, hour_s: int, rate: float) -> None:
        prefix = _utc(hour_s).strftime("%Y-%m-%dT%H:")
        for route_id, rentals in self.by_route.items():
            route = self.routes[route_id]
            for low, high, rental in _segments(rentals, hour_s):
                segment = Segment(route, rental, hour_s, prefix, low, high, self._interval(rental))
                expected = rate * self._weight(rental) * (high - low) / HOUR_S
                count = _poisson(self.rng, expected / segment.interval)
                if count:
                    self._clicks(segment, count)
            self.sink.maybe_flush()

    def _weight(self, rental: Rental | None) -> float:
        return IDLE_ROUTE_WEIGHT if rental is None else self.world.weights[rental.rental_id]

    def _interval(self, rental: Rental | None) -> int:
        return 1 if rental is None else self.world.sample_intervals.get(rental.rental_id, 1)

    def _templates(self, route: Route, rental: Rental | None) -> tuple[list[str], list[str]]:
        blobs = [""] * len(self.contract.blobs)
        values = {
            "host": route.host,
            "path": route.path,
            "route_id": route.route_id,
            "owner_id": route.owner_id,
            "event_kind": "click",
        }
        if rental is not None:
            values.update(renter_id=rental.renter_id, rental_id=rental.rental_id)
        for name, value in values.items():
            blobs[self.pos[name]] = value
        return blobs, blobs[: self.contract.legacy_blob_count]

    def _clicks(self, segment: Segment, count: int) -> None:
        """Append ``count`` points of one route-hour segment: the simulator's hot loop."""
        rng_range, rng_random, profiles = self.rng.randrange, self.rng.random, self.profiles
        template, legacy = self._templates(segment.route, segment.rental)
        index = "" if segment.rental is None else segment.rental.rental_id
        low, span, prefix = segment.low, segment.high - segment.low, segment.prefix
        buffer, pool, interval, invalid = self.sink.buffer, len(profiles), segment.interval, 0
        for _ in range(count):
            second = low + rng_range(span)
            profile = profiles[rng_range(pool)]
            if interval == 1 and rng_random() < OLD_WORKER_SHARE:
                # ADR-0002's Worker: eight blobs, and Date.now() as the index.
                blobs = legacy.copy()
                key = str((segment.hour_s + second) * 1000 + rng_range(1000))
                for position, value in profile.legacy_fields:
                    blobs[position] = value
            else:
                blobs, key = template.copy(), index
                for position, value in profile.fields:
                    blobs[position] = value
            buffer.append(
                {
                    "blobs": blobs,
                    "doubles": [1.0, 1.0 if profile.flagged else 0.0],
                    "indexes": [key],
                    "timestamp": prefix + _MMSS[second],
                    "sample_interval": interval,
                }
            )
            invalid += profile.invalid
        self._count(segment, count * interval, invalid * interval)
        self.tally.click_points += count

    def _count(self, segment: Segment, clicks: int, invalid: int) -> None:
        tally, day, rental = self.tally, _day_of(segment.hour_s), segment.rental
        tally.clicks += clicks
        if rental is None:
            key = (day, segment.route.route_id)
            tally.unattributed[key] = tally.unattributed.get(key, 0) + clicks
            return
        key = (rental.rental_id, day)
        tally.total[key] = tally.total.get(key, 0) + clicks
        tally.invalid[key] = tally.invalid.get(key, 0) + invalid
        tally.estimated[key] = tally.estimated.get(key, False) or segment.interval > 1
        hour_key = (rental.rental_id, segment.hour_s)
        tally.hour_valid[hour_key] = tally.hour_valid.get(hour_key, 0) + clicks - invalid

    def _invalidations(self, day: date) -> None:
        """Late invalidations of this day's still-valid clicks, written 1 to 6 days later."""
        by_rental: dict[str, list[tuple[int, int]]] = {}
        for (rental_id, hour_s), valid in self.tally.hour_valid.items():
            if valid > 0:
                by_rental.setdefault(rental_id, []).append((hour_s, valid))
        self.tally.hour_valid.clear()
        for rental_id, hours in by_rental.items():
            if self.rng.random() >= INVALIDATED_DAY_SHARE:
                continue
            for _ in range(self.rng.randint(1, 2)):
                slot = self.rng.randrange(len(hours))
                hour_s, remaining = hours[slot]
                if remaining <= 0:
                    continue
                clicks = self.rng.randint(1, max(1, remaining // 2))
                hours[slot] = (hour_s, remaining - clicks)
                self._invalidation(self.rentals[rental_id], hour_s, clicks, day)

    def _invalidation(self, rental: Rental, hour_s: int, clicks: int, day: date) -> None:
        days, weights = zip(*INVALIDATION_DELAY_DAYS, strict=True)
        delay = self.rng.choices(days, weights)[0] * DAY_S + self.rng.randrange(HOUR_S, DAY_S)
        written = hour_s + delay
        blobs, _ = self._templates(self.routes[rental.route_id], rental)
        blobs[self.pos["event_kind"]] = "invalidation"
        blobs[self.pos["original_click_at"]] = _utc(hour_s).strftime("%Y-%m-%dT%H:00:00Z")
        blobs[self.pos["invalidation_reason"]] = self.rng.choice(self.policy.reasons)
        self.sink.buffer.append({
            "blobs": blobs, "doubles": [0.0, float(clicks)], "indexes": [rental.rental_id],
            "timestamp": _utc(written).strftime("%Y-%m-%dT%H:%M:%SZ"), "sample_interval": 1,
        })  # fmt: skip
        self.tally.invalidations.setdefault((rental.rental_id, day), []).append((written, clicks))


def _segments(rentals: list[Rental], hour_s: int) -> Iterator[tuple[int, int, Rental | None]]:
    """Split one hour of a route into (first second, end second, rental or None when idle)."""
    hour_end, cut = hour_s + HOUR_S, hour_s
    for rental in rentals:
        ends = hour_end if rental.end_s is None else rental.end_s
        if ends <= hour_s or rental.start_s >= hour_end:
            continue
        low, high = max(rental.start_s, hour_s), min(ends, hour_end)
        if low > cut:
            yield cut - hour_s, low - hour_s, None
        yield low - hour_s, high - hour_s, rental
        cut = high
    if cut < hour_end:
        yield cut - hour_s, HOUR_S, None


# -- writing points -----------------------------------------------------------------------------


class _PointSink:
    """Buffers points and writes them to the emulator in batches, one batch in flight.

    A batch is posted from a worker thread while the next one is generated; waiting for the
    previous batch before posting the next keeps the write order, and so the emulator's
    contents, the same on every run.
    """

    def __init__(self, ae_base: str, dataset: str, batch_points: int) -> None:
        self.ae_base, self.dataset, self.batch_points = ae_base, dataset, batch_points
        self.buffer: list[dict] = []
        self.written = 0
        self._client = httpx.Client(timeout=httpx.Timeout(300.0, connect=10.0))
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ae-points")
        self._in_flight: Future[int] | None = None
        self._in_flight_points = 0

    @property
    def pending(self) -> int:
        """Points generated so far: written, being written, or still buffered."""
        return self.written + self._in_flight_points + len(self.buffer)

    def __enter__(self) -> _PointSink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            # After a failure, the batch in flight finishes but its outcome must not hide the
            # first error.
            if exc_info[0] is None:
                self.flush()
                self._settle()
        finally:
            self._writer.shutdown(wait=True)
            self._client.close()

    def maybe_flush(self) -> None:
        if len(self.buffer) >= self.batch_points:
            self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        from loaders.emulators.ae_admin import write_points

        self._settle()
        batch, self.buffer = self.buffer, []
        self._in_flight_points = len(batch)
        self._in_flight = self._writer.submit(
            write_points, self.ae_base, self.dataset, batch, client=self._client,
            batch_size=len(batch),
        )  # fmt: skip

    def _settle(self) -> None:
        """Wait for the batch in flight; its error, if any, is raised here."""
        if self._in_flight is None:
            return
        future, self._in_flight = self._in_flight, None
        self.written += future.result()
        self._in_flight_points = 0


# -- the truth ----------------------------------------------------------------------------------


def truth_rows(world: World, tally: Tally, start: date, days: int) -> list[TruthRow]:
    """What each nightly cycle D must produce for every rental-day d <= D with clicks."""
    customers = {renter.renter_id: renter.stripe_customer_id for renter in world.renters}
    customer_of = {rental.rental_id: customers[rental.renter_id] for rental in world.rentals}
    keys = sorted(key for key, total in tally.total.items() if total > 0)
    rows = []
    for offset in range(days):
        cycle = start + timedelta(days=offset)
        horizon = _epoch(cycle + timedelta(days=1))
        for rental_id, day in keys:
            if day > cycle:
                continue
            key = (rental_id, day)
            total, invalid = tally.total[key], tally.invalid[key]
            late = sum(n for at, n in tally.invalidations.get(key, ()) if at < horizon)
            valid = total - invalid - late
            row = TruthRow(
                cycle, rental_id, day, customer_of[rental_id], total, invalid, late, valid,
                tally.estimated[key],
            )  # fmt: skip
            rows.append(row)
    return rows


def _result(
    world: World, tally: Tally, *, start: date, days: int, seconds: float, written: int
) -> SimulationResult:
    rows = truth_rows(world, tally, start, days)
    last = start + timedelta(days=days - 1)
    by_customer: dict[str, int] = {}
    for row in rows:
        if row.cycle_date == last:
            customer = row.stripe_customer_id
            by_customer[customer] = by_customer.get(customer, 0) + row.valid_clicks
    invalidations = [item for items in tally.invalidations.values() for item in items]
    return SimulationResult(
        points_written=written,
        click_points=tally.click_points,
        clicks=tally.clicks,
        unattributed_clicks=sum(tally.unattributed.values()),
        invalidation_points=len(invalidations),
        invalidated_clicks=sum(n for _, n in invalidations),
        routes=len(world.routes),
        renters=len(world.renters),
        rentals=len(world.rentals),
        seconds=seconds,
        expected_valid_by_customer=dict(sorted(by_customer.items())),
        truth_rows=rows,
        unattributed=dict(sorted(tally.unattributed.items())),
    )


def unattributed_path_for(truth_path: Path) -> Path:
    return truth_path.with_suffix(".unattributed.csv")


def write_truth(result: SimulationResult, truth_path: Path) -> tuple[Path, Path]:
    truth_path.parent.mkdir(parents=True, exist_ok=True)
    with truth_path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(TRUTH_HEADER)
        writer.writerows(row.as_csv() for row in result.truth_rows)
    side = unattributed_path_for(truth_path)
    with side.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(UNATTRIBUTED_HEADER)
        for (day, route_id), clicks in result.unattributed.items():
            writer.writerow((day.isoformat(), route_id, clicks))
    log.info("truth written: %s (%d rows), %s", truth_path, len(result.truth_rows), side)
    return truth_path, side


def read_truth(truth_path: Path) -> list[TruthRow]:
    """Read a truth file back, typed, for tests and reconciliation."""
    with truth_path.open(newline="") as handle:
        return [
            TruthRow(
                cycle_date=date.fromisoformat(row["cycle_date"]),
                rental_id=row["rental_id"],
                click_date=date.fromisoformat(row["click_date"]),
                stripe_customer_id=row["stripe_customer_id"],
                total_clicks=int(row["total_clicks"]),
                invalid_clicks=int(row["invalid_clicks"]),
                late_invalidated_clicks=int(row["late_invalidated_clicks"]),
                valid_clicks=int(row["valid_clicks"]),
                is_estimated=row["is_estimated"] == "true",
            )
            for row in csv.DictReader(handle)
        ]


# -- command ------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    del name
    parser.add_argument(
        "--start", type=date.fromisoformat, default=date(2026, 11, 1),
        help="first simulated UTC day (default 2026-11-01)",
    )  # fmt: skip
    parser.add_argument("--days", type=int, default=14, help="days to simulate (default 14)")
    parser.add_argument("--rentals", type=int, default=200, help="rentals to create (default 200)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    parser.add_argument(
        "--truth", type=Path, metavar="FILE",
        help="write the expected numbers of every cycle to FILE, and unattributed clicks beside "
        "it (truth.csv -> truth.unattributed.csv)",
    )  # fmt: skip
    parser.add_argument(
        "--clicks-per-day", type=int, default=DEFAULT_CLICKS_PER_DAY, metavar="N",
        help=f"average clicks per day (default {DEFAULT_CLICKS_PER_DAY})",
    )  # fmt: skip
    parser.add_argument(
        "--append", action="store_true",
        help="keep what the AE emulator holds instead of resetting it first",
    )  # fmt: skip
    parser.add_argument(
        "--allow-remote", action="store_true",
        help="allow a DATABASE_URL or AE_SQL_URL that is not on this machine",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    settings = Settings.load(require=("database_url", "ae_sql_url"))
    simulate(
        settings,
        start=args.start,
        days=args.days,
        rentals=args.rentals,
        seed=args.seed,
        truth_path=args.truth,
        clicks_per_day=args.clicks_per_day,
        allow_remote=args.allow_remote,
        append=args.append,
    )
    return 0
