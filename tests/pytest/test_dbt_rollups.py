"""dbt's click_rollups over the real embedded Postgres, cycle by cycle.

Cycles are named by their day: cycle 1 is run_date 2026-11-01 (offset 0), cycle 5 is 2026-11-05.

Raw landing rows are written here and the expected rollups computed here, in Python, from the
same rows and the rules of docs/architecture.md (cycle cut, lookback, attribution, IVT policy).
dbt runs as a subprocess with the fresh database's PG* variables and its own target directory,
so tests never share a database or a manifest with each other or with a developer's shell.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from loaders.db import ensure_schemas
from loaders.settings import Secret, Settings, libpq_env

REPO = Path(__file__).resolve().parents[2]
DBT = str(Path(sys.executable).with_name("dbt"))
DAY1 = date(2026, 11, 1)
LOOKBACK_DAYS = 3
# click_rollups, its parents and the attribution side models its data tests read; not the ledger.
SELECTION = ("path:models/staging/ae", "path:models/staging/app", "path:models/intermediate",
             "+click_rollups")  # fmt: skip
ROLLUP_SELECT = (
    "select rental_id, click_date, total_clicks, invalid_clicks, late_invalidated_clicks,"
    " valid_clicks, is_estimated from marts.click_rollups order by rental_id, click_date"
)


def read_seed(name: str, key: str) -> dict[str, dict[str, str]]:
    with (REPO / "seeds" / f"{name}.csv").open(newline="") as handle:
        return {row[key]: row for row in csv.DictReader(handle)}


INVALID_BUCKETS = {
    name for name, row in read_seed("ivt_bot_buckets", "bot_bucket").items()
    if row["is_invalid"] == "true"
}  # fmt: skip
DATACENTER_ASNS = set(read_seed("ivt_datacenter_asns", "asn"))


# --- The world and its landed rows -------------------------------------------------------------


@dataclass(frozen=True)
class Rental:
    rental_id: str
    route_id: str
    renter_id: str
    starts_at: datetime
    ends_at: datetime | None


@dataclass(frozen=True)
class ClickRow:
    click_hour: datetime
    route_id: str
    renter_id: str
    rental_id: str  # '' for an older Worker
    clicks: int
    worker_invalid: int = 0
    bot_bucket: str = "likely_human"
    asn: str = "3320"
    interval: int = 1
    country: str = "DE"


@dataclass(frozen=True)
class InvalidationRow:
    written_hour: datetime
    original_click_hour: datetime
    route_id: str
    renter_id: str
    rental_id: str
    clicks: int


@dataclass
class World:
    rentals: list[Rental]
    clicks: list[ClickRow] = field(default_factory=list)
    invalidations: list[InvalidationRow] = field(default_factory=list)


def at(day: date, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


def cycle(offset: int) -> date:
    return DAY1 + timedelta(days=offset)


def make_world() -> World:
    """Two routes; route_b is handed from renter_b to renter_c at 12:30 of day 2."""
    rentals = [
        Rental("rent_a", "route_a", "renter_a", at(DAY1), None),
        Rental("rent_b", "route_b", "renter_b", at(DAY1), at(cycle(1), 12, 30)),
        Rental("rent_c", "route_b", "renter_c", at(cycle(1), 12, 30), None),
    ]
    world = World(rentals)
    for offset in range(5):
        day = cycle(offset)
        world.clicks += [
            ClickRow(at(day, 9), "route_a", "renter_a", "rent_a", 10 + offset, worker_invalid=1),
            ClickRow(at(day, 10), "route_a", "renter_a", "", 4),  # older Worker
            ClickRow(at(day, 11), "route_a", "renter_a", "rent_a", 3, bot_bucket="verified_bot"),
            ClickRow(at(day, 12), "route_a", "renter_a", "rent_a", 2, asn="16509", interval=2),
            ClickRow(at(day, 12), "route_b", "renter_b", "rent_b", 6, country="FR"),
            ClickRow(at(day, 13), "route_b", "", "", 5),  # idle route: unattributed
        ]
    # The Worker still tags rent_b after it ended: no candidate, so unattributed.
    world.clicks.append(ClickRow(at(cycle(2), 14), "route_b", "renter_b", "rent_b", 7))
    world.clicks.append(ClickRow(at(cycle(1), 12), "route_b", "renter_c", "rent_c", 8))
    # Written on day 4 about day 1, which has left the lookback by then.
    world.invalidations.append(
        InvalidationRow(at(cycle(3), 2), at(DAY1, 9), "route_a", "renter_a", "rent_a", 4)
    )
    world.invalidations.append(
        InvalidationRow(at(cycle(2), 5), at(cycle(1), 9), "route_a", "renter_a", "", 2)
    )
    return world


def write_app(conn: psycopg.Connection, world: World) -> None:
    for route_id in sorted({rental.route_id for rental in world.rentals}):
        conn.execute(
            "insert into app.routes (route_id, owner_id, host, path)"
            " values (%s, 'owner_1', %s, %s)",
            (route_id, "go.example", f"/{route_id}"),
        )
    for renter_id in sorted({rental.renter_id for rental in world.rentals}):
        conn.execute(
            "insert into app.renters (renter_id, name, stripe_customer_id) values (%s, %s, %s)",
            (renter_id, renter_id, f"cus_{renter_id}"),
        )
    for rental in world.rentals:
        conn.execute(
            "insert into app.rentals (rental_id, route_id, renter_id, owner_id, starts_at, ends_at)"
            " values (%s, %s, %s, 'owner_1', %s, %s)",
            (rental.rental_id, rental.route_id, rental.renter_id, rental.starts_at, rental.ends_at),
        )
    conn.commit()


def land_day(conn: psycopg.Connection, world: World, day: date) -> None:
    """Land one day like the loader does: replace its slice and log a succeeded load."""
    start, end = at(day), at(day + timedelta(days=1))
    load_id = uuid.uuid4()
    conn.execute("delete from raw.ae_clicks_hourly where click_hour >= %s and click_hour < %s",
                 (start, end))  # fmt: skip
    conn.execute(
        "delete from raw.ae_invalidations_hourly where written_hour >= %s and written_hour < %s",
        (start, end),
    )
    conn.execute(
        "insert into raw.ae_loads (load_id, dataset, slice_start, slice_end, status, query_hash,"
        " finished_at) values (%s, 'clicks', %s, %s, 'succeeded', 'test', now())",
        (load_id, start, end),
    )
    with conn.cursor().copy(
        "copy raw.ae_clicks_hourly (load_id, slice_start, slice_end, click_hour, route_id,"
        " renter_id, rental_id, owner_id, country, asn, bot_bucket, referrer_domain, device_class,"
        " clicks, invalid_clicks, sampled_rows, max_sample_interval) from stdin"
    ) as copy:
        for row in world.clicks:
            if start <= row.click_hour < end:
                copy.write_row((
                    load_id, start, end, row.click_hour, row.route_id, row.renter_id,
                    row.rental_id, "owner_1", row.country, row.asn, row.bot_bucket, "",
                    "desktop", row.clicks * row.interval, row.worker_invalid * row.interval,
                    row.clicks, row.interval,
                ))  # fmt: skip
    with conn.cursor().copy(
        "copy raw.ae_invalidations_hourly (load_id, slice_start, slice_end, written_hour,"
        " original_click_hour, route_id, renter_id, rental_id, owner_id, invalidation_reason,"
        " invalidated_clicks, sampled_rows, max_sample_interval) from stdin"
    ) as copy:
        for row in world.invalidations:
            if start <= row.written_hour < end:
                copy.write_row((
                    load_id, start, end, row.written_hour, row.original_click_hour, row.route_id,
                    row.renter_id, row.rental_id, "owner_1", "sivt_model", row.clicks, 1, 1,
                ))  # fmt: skip
    conn.commit()


# --- Independent truth -------------------------------------------------------------------------


def candidates(world: World, route_id: str, renter_id: str, hour: datetime) -> list[str]:
    hour_end = hour + timedelta(hours=1)
    return [
        rental.rental_id for rental in world.rentals
        if rental.route_id == route_id and rental.renter_id == renter_id
        and rental.starts_at < hour_end and (rental.ends_at is None or rental.ends_at > hour)
    ]  # fmt: skip


def attribute(
    world: World, route_id: str, renter_id: str, rental_id: str, hour: datetime
) -> str | None:
    """The rental a landed row is billed to, or None (unattributed, disagreement, ambiguous)."""
    found = candidates(world, route_id, renter_id, hour)
    if rental_id:
        return rental_id if rental_id in found else None
    return found[0] if len(found) == 1 else None


def expected_rollups(world: World, run_date: date) -> dict[tuple[str, date], tuple]:
    """Rental-day figures as cycle run_date must show them, for every day up to run_date."""
    horizon = at(run_date + timedelta(days=1))
    sums: dict[tuple[str, date], list] = {}
    for row in world.clicks:
        rental = attribute(world, row.route_id, row.renter_id, row.rental_id, row.click_hour)
        if rental is None or row.click_hour >= horizon:
            continue
        total = row.clicks * row.interval
        by_policy = row.bot_bucket in INVALID_BUCKETS or row.asn in DATACENTER_ASNS
        invalid = total if by_policy else row.worker_invalid * row.interval
        entry = sums.setdefault((rental, row.click_hour.date()), [0, 0, 0, False])
        entry[0] += total
        entry[1] += invalid
        entry[3] = entry[3] or row.interval > 1
    for row in world.invalidations:
        rental = attribute(
            world, row.route_id, row.renter_id, row.rental_id, row.original_click_hour
        )
        if rental is None or row.written_hour >= horizon:
            continue
        entry = sums.setdefault((rental, row.original_click_hour.date()), [0, 0, 0, False])
        entry[2] += row.clicks
    return {
        key: (total, invalid, late, total - invalid - late, estimated)
        for key, (total, invalid, late, estimated) in sums.items()
    }


# --- Running dbt -------------------------------------------------------------------------------


def dbt(settings: Settings, workdir: Path, *args: str) -> None:
    """One dbt command against the test's own database; raise with dbt's output on failure."""
    env = {**os.environ, **libpq_env(settings.database_url), "DBT_PROFILES_DIR": str(REPO)}
    command = [
        DBT, *args, "--target-path", str(workdir / "target"), "--log-path", str(workdir / "logs"),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = "\n".join(done.stdout.splitlines()[-40:])
        raise AssertionError(f"{' '.join(args)} failed ({done.returncode}):\n{tail}")


def build(settings: Settings, workdir: Path, run_date: date, *extra: str) -> None:
    dbt(
        settings, workdir, "build", "--select", *SELECTION, "--indirect-selection", "buildable",
        "--exclude-resource-type", "unit_test", "--vars",
        f"{{run_date: '{run_date.isoformat()}', lookback_days: {LOOKBACK_DAYS}}}", *extra,
    )  # fmt: skip


def rollups(settings: Settings) -> dict[tuple[str, date], tuple]:
    with psycopg.connect(settings.database_url) as conn:
        rows = conn.execute(ROLLUP_SELECT).fetchall()
    return {(row[0], row[1]): tuple(row[2:]) for row in rows}


def table_hash(settings: Settings) -> str:
    with psycopg.connect(settings.database_url) as conn:
        row = conn.execute(
            "select md5(string_agg(rollups::text, '|' order by rental_id, click_date))"
            " from marts.click_rollups as rollups"
        ).fetchone()
    return row[0]


def non_zero(table: dict[tuple[str, date], tuple]) -> dict[tuple[str, date], tuple]:
    return {key: value for key, value in table.items() if any(value[:4])}


@dataclass
class Sequence:
    """What the tables looked like along five nightly cycles of one world."""

    truth: dict[int, dict[tuple[str, date], tuple]] = field(default_factory=dict)
    after: dict[int, dict[tuple[str, date], tuple]] = field(default_factory=dict)
    hash_first: str = ""
    hash_rebuilt: str = ""
    history: dict[date, tuple] = field(default_factory=dict)
    full_refresh: dict[tuple[str, date], tuple] = field(default_factory=dict)


@pytest.fixture(scope="module")
def sequence(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sequence]:
    """Cycles 1-5 on their own database; cycle 3 first re-lands day 2 without rent_c's clicks."""
    with own_database(settings) as db:
        workdir, world, seen = tmp_path_factory.mktemp("dbt"), make_world(), Sequence()
        with psycopg.connect(db.database_url) as conn:
            write_app(conn, world)
            for offset in range(5):
                if offset == 2:
                    world.clicks = [row for row in world.clicks if row.rental_id != "rent_c"]
                    land_day(conn, world, cycle(1))
                land_day(conn, world, cycle(offset))
                build(db, workdir, cycle(offset))
                seen.after[offset] = rollups(db)
                seen.truth[offset] = expected_rollups(world, cycle(offset))
                if offset == 1:
                    seen.hash_first = table_hash(db)
                    build(db, workdir, cycle(offset))
                    seen.hash_rebuilt = table_hash(db)
        seen.history = history(db, "rent_a")
        build(db, workdir, cycle(4), "--full-refresh")
        seen.full_refresh = rollups(db)
        yield seen


@contextmanager
def own_database(settings: Settings) -> Iterator[Settings]:
    """Like conftest's fresh_db, for a module-scoped fixture that builds once for many tests."""
    name = "t_" + uuid.uuid4().hex[:12]
    admin = settings.database_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    url = settings.database_url.rsplit("/", 1)[0] + f"/{name}"
    own = replace(settings, database_url=Secret(url))
    with psycopg.connect(url) as conn:
        ensure_schemas(conn)
    try:
        yield own
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
            )


def history(settings: Settings, rental_id: str) -> dict[date, tuple]:
    with psycopg.connect(settings.database_url) as conn:
        rows = conn.execute(
            "select click_date, first_seen_cycle, last_changed_cycle, built_cycle"
            " from marts.click_rollups where rental_id = %s",
            (rental_id,),
        ).fetchall()
    return {row[0]: tuple(row[1:]) for row in rows}


# --- Tests -------------------------------------------------------------------------------------


def test_rebuilding_a_cycle_leaves_rollups_identical(sequence: Sequence) -> None:
    # Given cycle 2 built, when it is built again, then click_rollups hashes the same
    assert sequence.hash_first
    assert sequence.hash_rebuilt == sequence.hash_first


@pytest.mark.parametrize("offset", range(5))
def test_every_cycle_matches_the_truth(sequence: Sequence, offset: int) -> None:
    # Given the cycles up to this one, then every rental-day with clicks is exactly as the
    # rules compute it from the landed rows, and any other row is a key that went to zero
    built, truth = sequence.after[offset], sequence.truth[offset]
    assert non_zero(built) == truth
    assert set(built) - set(truth) <= {("rent_c", cycle(1))}


def test_a_vanished_key_goes_to_zero(sequence: Sequence) -> None:
    # Given rent_c's only clicks (day 2) landed by cycle 2 and gone when cycle 3 re-landed day 2
    assert sequence.after[1][("rent_c", cycle(1))][0] == 8
    # Then from cycle 3 on its row is all zeros instead of a stale 8
    for offset in (2, 3, 4):
        assert sequence.after[offset][("rent_c", cycle(1))] == (0, 0, 0, 0, False)


def test_a_day_outside_the_lookback_takes_a_new_invalidation(sequence: Sequence) -> None:
    # Given day 1 left the lookback after cycle 3, and 4 of its clicks were invalidated on day 4
    before, after = sequence.after[2][("rent_a", DAY1)], sequence.after[3][("rent_a", DAY1)]
    # Then cycle 4 rebuilt it with the late invalidation, and cycle 5 left it as it was
    assert (before[2], after[2]) == (0, 4)
    assert after[3] == before[3] - 4
    assert sequence.after[4][("rent_a", DAY1)] == after


@pytest.mark.parametrize(
    ("day", "first_seen_changed_built", "why"),
    [
        (DAY1, (DAY1, cycle(3), cycle(3)), "named by the invalidation written on day 4"),
        (cycle(1), (cycle(1), cycle(2), cycle(3)), "invalidated on day 3, last in lookback 4"),
        (cycle(4), (cycle(4), cycle(4), cycle(4)), "built once"),
    ],
)
def test_history_columns(
    sequence: Sequence, day: date, first_seen_changed_built: tuple[date, date, date], why: str
) -> None:
    # Given five cycles, then rent_a's day carries the cycles that first built it, last changed
    # a count and last built it
    assert sequence.history[day] == first_seen_changed_built, why


def test_full_refresh_equals_the_incremental_sequence(sequence: Sequence) -> None:
    # Given five incremental cycles, when cycle 5 is rebuilt from scratch, then every row with
    # any count is identical; only the incremental zero row of the vanished key is not rebuilt
    assert non_zero(sequence.full_refresh) == non_zero(sequence.after[4])
    assert set(sequence.after[4]) - set(sequence.full_refresh) == {("rent_c", cycle(1))}


# --- End to end: simulator -> AE emulator -> loader -> dbt -------------------------------------

E2E_START = date(2026, 11, 1)
E2E_DAYS = 4


def test_simulated_cycles_match_the_simulators_truth(
    fresh_db: Settings, ae_reset: str, tmp_path: Path
) -> None:
    # Given a small simulated world: sampled heavy hitters, older Workers, late invalidations
    from loaders.landing import load_window
    from loaders.simulate import read_truth, simulate

    truth_path = tmp_path / "truth.csv"
    simulate(
        fresh_db, start=E2E_START, days=E2E_DAYS, rentals=8, seed=11, truth_path=truth_path,
        clicks_per_day=800,
    )  # fmt: skip
    truth: dict[date, dict[tuple[str, date], tuple]] = {}
    for row in read_truth(truth_path):
        truth.setdefault(row.cycle_date, {})[(row.rental_id, row.click_date)] = (
            row.total_clicks, row.invalid_clicks, row.late_invalidated_clicks, row.valid_clicks,
            row.is_estimated,
        )  # fmt: skip
    assert any(value[4] for value in truth[max(truth)].values()), "no estimated row simulated"
    assert any(value[2] for value in truth[max(truth)].values()), "no late invalidation"

    for offset in range(E2E_DAYS):
        # When each night lands its day and builds its cycle
        day = E2E_START + timedelta(days=offset)
        load_window(fresh_db, at(day), at(day + timedelta(days=1)), slice_hours=24)
        build(fresh_db, tmp_path, day)

        # Then click_rollups is the simulator's truth for that cycle, estimated rows included
        assert non_zero(rollups(fresh_db)) == truth[day], f"cycle {day}"
