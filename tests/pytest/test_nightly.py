"""`clicks nightly` as an operator meets it: exit codes, the single-run lock, the run records.

Given a small simulated stretch of days on a fresh database, when cycles run through the real
command line (a subprocess, as cron or CI would start it), then each outcome has its exit code
and leaves a row in ops.nightly_runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from loaders.db import ensure_schemas
from loaders.emulators import ae_admin, stripe_admin
from loaders.nightly import NIGHTLY_LOCK_KEY
from loaders.settings import Secret, Settings
from loaders.simulate import simulate

pytestmark = pytest.mark.slow

START = datetime.now(UTC).date() - timedelta(days=8)
STEPS = ["guard", "load", "dbt build", "export", "reconcile"]


def clicks(settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "DATABASE_URL": settings.database_url, **env}
    return subprocess.run(
        [str(Path(sys.executable).with_name("clicks")), *args],
        env=environment, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


def runs(settings) -> list[tuple]:
    with psycopg.connect(settings.database_url) as conn:
        return conn.execute(
            "select cycle_date, outcome, exit_code, steps from ops.nightly_runs order by started_at"
        ).fetchall()


@pytest.fixture(scope="module")
def cycled(request):
    """Three cycles run once for the module; tests below build on that state in order."""
    settings = request.getfixturevalue("fresh_db_module")
    simulate(settings, start=START, days=3, rentals=8, seed=3, clicks_per_day=400)
    result = clicks(settings, "nightly", "--from", str(START), "--to", str(START + timedelta(2)))
    return settings, result


@pytest.fixture(scope="module")
def fresh_db_module(stack_env):
    """A module-wide fresh database (the cycles are expensive, so the tests share them)."""
    base = Settings.load()
    name = "n_" + uuid.uuid4().hex[:10]
    admin = base.database_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    settings = replace(base, database_url=Secret(base.database_url.rsplit("/", 1)[0] + "/" + name))
    with psycopg.connect(settings.database_url) as conn:
        ensure_schemas(conn)
    ae_admin.reset(stack_env["_ae_base"])
    stripe_admin.reset(stack_env["_stripe_base"])
    yield settings
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


def test_cycles_that_pass_exit_zero_and_are_recorded_step_by_step(cycled):
    settings, result = cycled
    assert result.returncode == 0, result.stderr[-3000:]
    recorded = runs(settings)
    assert [(row[0], row[1], row[2]) for row in recorded] == [
        (START + timedelta(days=offset), "succeeded", 0) for offset in range(3)
    ]
    assert all([step["name"] for step in row[3]] == STEPS for row in recorded)
    assert "cycle" in result.stdout and str(START + timedelta(days=2)) in result.stdout


def test_a_second_nightly_refuses_at_once_while_one_holds_the_lock(cycled):
    settings, _ = cycled
    before = len(runs(settings))
    with psycopg.connect(settings.database_url, autocommit=True) as holder:
        holder.execute("select pg_advisory_lock(%s)", (NIGHTLY_LOCK_KEY,))
        result = clicks(settings, "nightly", "--date", str(START + timedelta(days=3)))
    assert result.returncode == 1
    assert "another `clicks nightly` is running" in result.stderr
    assert len(runs(settings)) == before


def test_an_older_cycle_is_refused_without_the_replay_flag(cycled):
    settings, _ = cycled
    result = clicks(settings, "nightly", "--date", str(START))
    assert result.returncode == 1
    assert "older than the newest booked cycle" in result.stderr
    assert runs(settings)[-1][1] == "failed"


def test_other_failures_exit_one_and_are_recorded_as_failed(cycled):
    settings, _ = cycled
    result = clicks(settings, "nightly", "--date", str(START + timedelta(days=3)),
                    AE_API_TOKEN="wrong-token")  # fmt: skip
    assert result.returncode == 1
    assert "wrong-token" not in result.stderr
    last = runs(settings)[-1]
    assert last[1:3] == ("failed", 1)
    assert [step["name"] for step in last[3]] == ["guard", "load"]


def test_the_gate_refusal_exits_three_names_the_test_and_sends_nothing(cycled):
    settings, _ = cycled
    cycle = START + timedelta(days=3)
    with psycopg.connect(settings.database_url) as conn:
        route, owner, renter = conn.execute(
            "select rentals.route_id, rentals.owner_id, renters.renter_id"
            " from app.rentals as rentals"
            " inner join app.renters as renters on renters.renter_id <> rentals.renter_id"
            " where rentals.ends_at is null order by rentals.rental_id limit 1"
        ).fetchone()
        conn.execute(
            "insert into app.rentals (rental_id, route_id, renter_id, owner_id, starts_at, status)"
            " values ('overlap_1', %s, %s, %s, %s, 'active')",
            (route, renter, owner, datetime.combine(START, datetime.min.time(), tzinfo=UTC)),
        )
    result = clicks(settings, "nightly", "--date", str(cycle))
    assert result.returncode == 3, result.stderr[-3000:]
    assert "overlap" in result.stderr
    assert runs(settings)[-1][1:3] == ("refused", 3)
    with psycopg.connect(settings.database_url) as conn:
        sent = conn.execute(
            "select count(*) from billing.meter_event_exports where booked_cycle = %s", (cycle,)
        ).fetchone()[0]
    assert sent == 0


def test_dbt_docs_generate_documents_the_marts_and_the_exposures(cycled):
    from loaders import dbt_runner

    settings, _ = cycled
    result = dbt_runner.run_dbt(settings, ["docs", "generate"], run_date=START)
    assert result.ok, result.summary
    target = Path(dbt_runner.dbt_env(settings)["DBT_TARGET_PATH"])
    catalog = (target / "catalog.json").read_text()
    manifest = (target / "manifest.json").read_text()
    assert '"model.click_telemetry.click_rollups"' in catalog
    assert '"exposure.click_telemetry.stripe_meter_export"' in manifest
