"""The ledger over simulated cycles: click_adjustments against truth computed here.

Each test gets its own database, writes app.* and raw.* rows directly (as the simulator and the
loader would) and runs `dbt build` per cycle. Truth is recomputed in Python from what was landed,
never read back from the models.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from loaders.settings import Settings, libpq_env

REPO = Path(__file__).resolve().parents[2]
HUMAN_ASN = "64500"  # a documentation ASN no IVT policy seed lists
ROUTE_RENTER = {"r_a": ("ro_a", "u_a"), "r_b": ("ro_b", "u_b")}

RentalDay = tuple[str, date]


@dataclass
class Truth:
    """What was landed, by the cycle that landed it; the expected ledger state per cycle."""

    clicks: dict[tuple[int, datetime, str], tuple[date, int, int]] = field(default_factory=dict)
    invalidations: list[tuple[date, datetime, str, date, int]] = field(default_factory=list)

    def valid_as_of(self, cycle: date) -> dict[RentalDay, tuple[int, int]]:
        """(total, valid) per rental-day as cycle `cycle` must bill it."""
        latest: dict[tuple[datetime, str], tuple[int, date, int, int]] = {}
        for (order, hour, rental), (landed_for, total, invalid) in self.clicks.items():
            seen = landed_for <= cycle and hour < _day_end(cycle)
            if seen and ((hour, rental) not in latest or latest[(hour, rental)][0] < order):
                latest[(hour, rental)] = (order, landed_for, total, invalid)
        sums: dict[RentalDay, list[int]] = defaultdict(lambda: [0, 0])
        for (hour, rental), (_, _, total, invalid) in latest.items():
            sums[(rental, hour.date())][0] += total
            sums[(rental, hour.date())][1] += total - invalid
        for landed_for, written, rental, day, count in self.invalidations:
            if landed_for <= cycle and written < _day_end(cycle):
                sums[(rental, day)][1] -= count
        return {key: (total, valid) for key, (total, valid) in sums.items()}


def _day_end(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), datetime.min.time(), UTC)


def _hour(day: date, hour: int) -> datetime:
    return datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=hour)


@pytest.fixture
def db(fresh_db: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A new database with two renters and two rentals; dbt's profile points at it."""
    for name, value in libpq_env(fresh_db.database_url).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DBT_PROFILES_DIR", str(REPO))
    monkeypatch.setenv("DBT_TARGET_PATH", str(tmp_path / "target"))
    monkeypatch.setenv("DBT_LOG_PATH", str(tmp_path / "logs"))
    with psycopg.connect(fresh_db.database_url, autocommit=True) as conn:
        for renter, customer in (("u_a", "cus_a"), ("u_b", "cus_b")):
            conn.execute(
                "insert into app.renters (renter_id, name, stripe_customer_id) values (%s, %s, %s)",
                (renter, renter, customer),
            )
        for route, renter in (("ro_a", "u_a"), ("ro_b", "u_b")):
            conn.execute(
                "insert into app.routes (route_id, owner_id, host, path)"
                " values (%s, 'o_1', %s, '/')",
                (route, f"{route}.example"),
            )
            add_rental(conn, f"r_{route[-1]}", route, renter, datetime(2026, 10, 1, tzinfo=UTC))
    yield fresh_db.database_url


def add_rental(
    conn: psycopg.Connection, rental: str, route: str, renter: str, starts: datetime
) -> None:
    conn.execute(
        "insert into app.rentals (rental_id, route_id, renter_id, owner_id, starts_at)"
        " values (%s, %s, %s, 'o_1', %s)",
        (rental, route, renter, starts),
    )


def _new_load(conn: psycopg.Connection, start: datetime) -> uuid.UUID:
    """One succeeded load per landed hour, so a re-landing replaces exactly that hour."""
    load_id = uuid.uuid4()
    conn.execute(
        "insert into raw.ae_loads (load_id, dataset, slice_start, slice_end, status, query_hash,"
        " finished_at) values (%s, 'clicks', %s, %s, 'succeeded', 'test', clock_timestamp())",
        (load_id, start, start + timedelta(hours=1)),
    )
    return load_id


@dataclass
class Landing:
    """Writes raw.* as the loader would, and records the same facts in the truth."""

    conn: psycopg.Connection
    truth: Truth

    def clicks(
        self,
        cycle: date,
        hour: datetime,
        rental: str,
        clicks: int,
        *,
        invalid: int = 0,
        asn: str = HUMAN_ASN,
    ) -> None:
        """Land (or land again) one hour; one rental per hour, as a re-landing replaces it."""
        route, renter = ROUTE_RENTER[rental]
        self.conn.execute("delete from raw.ae_clicks_hourly where click_hour = %s", (hour,))
        load_id = _new_load(self.conn, hour)
        self.conn.execute(
            "insert into raw.ae_clicks_hourly (load_id, slice_start, slice_end, click_hour,"
            " route_id, renter_id, rental_id, owner_id, country, asn, bot_bucket,"
            " referrer_domain, device_class, clicks, invalid_clicks, sampled_rows,"
            " max_sample_interval) values (%s, %s, %s, %s, %s, %s, %s, 'o_1', 'DE', %s,"
            " 'likely_human', 'ref.example', 'desktop', %s, %s, %s, 1)",
            (
                load_id,
                hour,
                hour + timedelta(hours=1),
                hour,
                route,
                renter,
                rental,
                asn,
                clicks,
                invalid,
                max(clicks, 1),
            ),
        )
        self.truth.clicks[(len(self.truth.clicks), hour, rental)] = (cycle, clicks, invalid)

    def invalidation(
        self,
        cycle: date,
        written: datetime,
        clicked: datetime,
        rental: str,
        *,
        reason: str,
        count: int,
    ) -> None:
        route, renter = ROUTE_RENTER[rental]
        load_id = _new_load(self.conn, written)
        self.conn.execute(
            "insert into raw.ae_invalidations_hourly (load_id, slice_start, slice_end,"
            " written_hour, original_click_hour, route_id, renter_id, rental_id, owner_id,"
            " invalidation_reason, invalidated_clicks, sampled_rows, max_sample_interval)"
            " values (%s, %s, %s, %s, %s, %s, %s, %s, 'o_1', %s, %s, %s, 1)",
            (
                load_id,
                written,
                written + timedelta(hours=1),
                written,
                clicked,
                route,
                renter,
                rental,
                reason,
                count,
                count,
            ),
        )
        self.truth.invalidations.append((cycle, written, rental, clicked.date(), count))


@dataclass
class Build:
    success: bool
    output: str


def dbt_build(cycle: date, *, replay: bool = False, seeds: bool = True) -> Build:
    """`dbt build` of one cycle, in-process; the output is kept for messages."""
    from dbt.cli.main import dbtRunner

    dbt_vars = f"{{run_date: {cycle.isoformat()}, allow_replay: {str(replay).lower()}}}"
    args = ["build", "--vars", dbt_vars, "--project-dir", str(REPO), "--quiet"]
    if not seeds:
        # the policy test writes the seed tables itself; reloading the CSVs would undo it
        args += ["--exclude", "resource_type:seed"]
    result = dbtRunner().invoke(args)
    return Build(success=result.success, output=str(result.exception or ""))


def ledger_totals(conn: psycopg.Connection, through: date) -> dict[RentalDay, tuple[int, int]]:
    rows = conn.execute(
        "select rental_id, click_date, sum(total_clicks_delta), sum(valid_clicks_delta)"
        " from marts.click_adjustments where booked_cycle <= %s group by 1, 2",
        (through,),
    ).fetchall()
    return {(rental, day): (int(total), int(valid)) for rental, day, total, valid in rows}


def ledger_entries(conn: psycopg.Connection) -> list[tuple]:
    """Every entry's business columns (booked_at and invocation_id move on a rerun)."""
    return conn.execute(
        "select rental_id, click_date, booked_cycle, entry_kind, stripe_customer_id,"
        " total_clicks_delta, invalid_clicks_delta, late_invalidated_clicks_delta,"
        " valid_clicks_delta, reason, reason_code from marts.click_adjustments order by 1, 2, 3"
    ).fetchall()


def export_cycle(conn: psycopg.Connection, cycle: date) -> int:
    """What loaders/export.py records after Stripe accepted the cycle's events."""
    return conn.execute(
        "insert into billing.meter_event_exports (identifier, booked_cycle, rental_id,"
        " click_date, entry_kind, stripe_customer_id, event_name, value, event_timestamp,"
        " status, sent_at) select md5(concat_ws('|', booked_cycle, rental_id, click_date)),"
        " booked_cycle, rental_id, click_date, entry_kind, stripe_customer_id, 'valid_clicks',"
        " value, event_timestamp, 'sent', now() from marts.billing_export"
        " where booked_cycle = %s",
        (cycle,),
    ).rowcount


def _ops_columns(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute(
        "select table_name, column_name, data_type, is_nullable, column_default"
        " from information_schema.columns where table_schema = 'ops'"
        " and table_name in ('dbt_invocations', 'dbt_node_results') order by 1, ordinal_position"
    ).fetchall()


def nonzero(state: dict[RentalDay, tuple[int, int]]) -> dict[RentalDay, tuple[int, int]]:
    return {key: value for key, value in state.items() if value != (0, 0)}


NOV = {day: date(2026, 11, day) for day in range(1, 8)}


def land_week(land: Landing) -> dict[date, Callable[[], None]]:
    """The landings that arrive before each cycle: late clicks, late invalidations."""

    def before_3() -> None:
        land.clicks(NOV[3], _hour(NOV[2], 10), "r_a", 10, invalid=2)
        land.clicks(NOV[3], _hour(NOV[3], 9), "r_a", 5)
        land.clicks(NOV[3], _hour(NOV[3], 14), "r_b", 8)

    def before_4() -> None:
        # two late clicks of an hour already billed, and a model verdict on that hour
        land.clicks(NOV[4], _hour(NOV[3], 9), "r_a", 7)
        land.invalidation(
            NOV[4], _hour(NOV[4], 8), _hour(NOV[3], 9), "r_a", reason="sivt_model", count=3
        )
        land.clicks(NOV[4], _hour(NOV[4], 11), "r_b", 6)

    def before_5() -> None:
        # an invalidation of a day outside the lookback (2 Nov in cycle 5 Nov): cycle rule 3
        land.invalidation(
            NOV[5], _hour(NOV[5], 10), _hour(NOV[2], 10), "r_a", reason="givt_datacenter", count=1
        )
        land.clicks(NOV[5], _hour(NOV[5], 7), "r_a", 4)

    return {NOV[3]: before_3, NOV[4]: before_4, NOV[5]: before_5}


def test_ledger_equals_truth_after_every_cycle_and_reruns_change_nothing(db: str) -> None:
    # given a week of landings with late clicks and late invalidations
    truth = Truth()
    with psycopg.connect(db, autocommit=True) as conn:
        steps = land_week(Landing(conn, truth))

        # when each cycle is built and exported in order
        for cycle, land in steps.items():
            land()
            build = dbt_build(cycle)
            assert build.success, f"cycle {cycle}: {build.output}"
            # then the ledger through the cycle equals the truth as of the cycle
            assert ledger_totals(conn, cycle) == nonzero(truth.valid_as_of(cycle))
            export_cycle(conn, cycle)

        entries = ledger_entries(conn)
        late = {(row[0], row[1], row[2]): row[9:] for row in entries if row[3] == "adjustment"}
        assert late[("r_a", NOV[3], NOV[4])] == ("late_clicks+late_invalidation", "SIVT:sivt_model")
        assert late[("r_a", NOV[2], NOV[5])] == ("late_invalidation", "GIVT:givt_datacenter")
        checksums = conn.execute("select * from marts.click_adjustments_checksums").fetchall()

        # when the newest cycle is rerun, then nothing changes
        assert dbt_build(NOV[5]).success
        assert ledger_entries(conn) == entries
        after = conn.execute("select * from marts.click_adjustments_checksums").fetchall()
        assert after == checksums


def test_older_cycle_is_refused_then_replayed_in_order(db: str) -> None:
    # given three cycles booked and exported
    truth = Truth()
    with psycopg.connect(db, autocommit=True) as conn:
        for cycle, land in land_week(Landing(conn, truth)).items():
            land()
            assert dbt_build(cycle).success
            export_cycle(conn, cycle)
        entries = ledger_entries(conn)
        invocations = conn.execute("select count(*) from ops.dbt_invocations").fetchone()

        # when an older cycle is run without the replay var, then it is refused untouched
        refused = dbt_build(NOV[4])
        assert not refused.success
        assert "run_date 2026-11-04" in refused.output and "2026-11-05" in refused.output
        assert ledger_entries(conn) == entries
        assert conn.execute("select count(*) from ops.dbt_invocations").fetchone() == invocations

        # when it is replayed and every later cycle rerun in order
        assert dbt_build(NOV[4], replay=True).success
        assert ledger_totals(conn, NOV[4]) == nonzero(truth.valid_as_of(NOV[4]))
        assert dbt_build(NOV[5]).success

        # then the ledger is back to the truth, with the same entries: nothing bills twice
        assert ledger_totals(conn, NOV[5]) == nonzero(truth.valid_as_of(NOV[5]))
        assert ledger_entries(conn) == entries


def test_policy_change_books_adjustments_in_its_own_cycle_only(db: str) -> None:
    # given two cycles of clicks from one ASN the policy does not list
    with psycopg.connect(db, autocommit=True) as conn:
        # and a database where the Python side never created ops: dbt's hook must do it
        ops_columns = _ops_columns(conn)
        conn.execute("drop schema ops cascade")
        land = Landing(conn, Truth())
        land.clicks(NOV[3], _hour(NOV[1], 9), "r_a", 9)
        land.clicks(NOV[3], _hour(NOV[3], 9), "r_a", 10)
        assert dbt_build(NOV[3]).success
        assert _ops_columns(conn) == ops_columns
        export_cycle(conn, NOV[3])
        land.clicks(NOV[4], _hour(NOV[4], 9), "r_a", 6)
        before = ledger_entries(conn)

        # when the data-centre list gains that ASN before cycle 4 Nov
        conn.execute(
            "insert into policy.ivt_datacenter_asns (asn, provider, ivt_category)"
            " values (%s, 'Test Cloud', 'GIVT')",
            (HUMAN_ASN,),
        )
        assert dbt_build(NOV[4], seeds=False).success

        # then cycle 4 Nov books the change for the days it re-read, as adjustments
        entries = ledger_entries(conn)
        assert set(before) <= set(entries)
        new = [row for row in entries if row[2] == NOV[4]]
        by_day = {row[1]: row for row in new}
        assert set(by_day) == {NOV[3], NOV[4]}  # 1 Nov is outside the lookback: untouched
        assert by_day[NOV[3]][3] == "adjustment"
        assert by_day[NOV[3]][6:10] == (10, 0, -10, "ivt_policy_change")
        assert by_day[NOV[3]][10] == "GIVT"
        assert by_day[NOV[4]][3:4] == ("usage",) and by_day[NOV[4]][8] == 0


def _renter_without_customer(conn: psycopg.Connection) -> None:
    conn.execute("update app.renters set stripe_customer_id = null where renter_id = 'u_a'")


def _overlapping_rental(conn: psycopg.Connection) -> None:
    add_rental(conn, "r_a2", "ro_a", "u_b", datetime(2026, 10, 15, tzinfo=UTC))


def _earlier_cycle_never_exported(conn: psycopg.Connection) -> None:
    assert dbt_build(NOV[2]).success  # cycle 2 Nov books usage that never reaches Stripe
    Landing(conn, Truth()).clicks(NOV[3], _hour(NOV[3], 11), "r_b", 4)


@pytest.mark.parametrize(
    ("make_bad_input", "failing_test"),
    [
        (_renter_without_customer, "billing_no_usage_without_stripe_customer"),
        (_overlapping_rental, "attribution_rentals_do_not_overlap"),
        (_earlier_cycle_never_exported, "reconciliation_daily_differences_zero"),
    ],
)
def test_bad_input_skips_billing_export_and_records_the_blocking_test(
    db: str, make_bad_input: Callable[[psycopg.Connection], None], failing_test: str
) -> None:
    # given a cycle with billable usage and one bad input
    with psycopg.connect(db, autocommit=True) as conn:
        Landing(conn, Truth()).clicks(NOV[2], _hour(NOV[2], 9), "r_a", 10)
        make_bad_input(conn)

        # when the cycle is built
        assert not dbt_build(NOV[3]).success

        # then billing_export is skipped and the failing test is recorded as blocking it
        latest = conn.execute(
            "select invocation_id, success from ops.dbt_invocations"
            " where run_date = %s order by started_at desc limit 1",
            (NOV[3],),
        ).fetchone()
        rows = conn.execute(
            "select split_part(unique_id, '.', 3), status, blocks_export"
            " from ops.dbt_node_results where invocation_id = %s and (unique_id like %s"
            "  or unique_id = 'model.click_telemetry.billing_export')",
            (latest[0], f"test.%.{failing_test}%"),
        ).fetchall()
        assert (failing_test, "fail", True) in rows
        assert ("billing_export", "skipped", True) in rows
        assert latest[1] is False
