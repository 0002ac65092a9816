"""The analysts' hourly mart against the simulator's own count of the traffic it generated.

The dbt tests tie fct_clicks_hourly's attributed rows to click_rollups; nothing in dbt can say
whether the rows no rental claims are right, since they have no billing counterpart. Here a
small simulated world goes through AE, the loader and one dbt build, and the mart's
unattributed clicks per day and route must be the ones the simulator wrote, and its attributed
clicks per rental-day the simulator's truth (not click_rollups').
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg

from loaders.settings import Settings, libpq_env

REPO = Path(__file__).resolve().parents[2]
DBT = str(Path(sys.executable).with_name("dbt"))
START = date(2026, 11, 1)
DAYS = 3
LAST = START + timedelta(days=DAYS - 1)


def at(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def build(settings: Settings, workdir: Path, run_date: date) -> None:
    """The marts and their parents, with the data tests they can run; show dbt's output if not."""
    env = {**os.environ, **libpq_env(settings.database_url), "DBT_PROFILES_DIR": str(REPO)}
    command = [
        DBT, "build", "--select", "+fct_clicks_hourly", "+dim_rentals", "--indirect-selection",
        "buildable", "--exclude-resource-type", "unit_test",
        "--vars", f"{{run_date: '{run_date.isoformat()}'}}", "--target-path",
        str(workdir / "target"), "--log-path", str(workdir / "logs"),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    tail = "\n".join(done.stdout.splitlines()[-40:])
    assert done.returncode == 0, f"dbt build failed ({done.returncode}):\n{tail}"


# Attributed clicks by rental-day, unattributed ones by day and route: how each truth is kept.
MART_CLICKS = {
    True: "select rental_id, click_date, sum(total_clicks), sum(invalid_clicks)"
    " from marts.fct_clicks_hourly where is_attributed group by 1, 2",
    False: "select click_date, route_id, sum(total_clicks), sum(invalid_clicks)"
    " from marts.fct_clicks_hourly where not is_attributed group by 1, 2",
}


def mart_clicks(settings: Settings, attributed: bool) -> dict[tuple, tuple[int, int]]:
    with psycopg.connect(settings.database_url) as conn:
        rows = conn.execute(MART_CLICKS[attributed]).fetchall()
    return {(first, second): (int(total), int(invalid)) for first, second, total, invalid in rows}


def test_the_hourly_mart_counts_what_the_simulator_sent(
    fresh_db: Settings, ae_reset: str, tmp_path: Path
) -> None:
    # Given a small world with traffic on routes no rental covers, landed through AE
    from loaders.landing import load_window
    from loaders.simulate import simulate

    result = simulate(fresh_db, start=START, days=DAYS, rentals=8, seed=11, clicks_per_day=800)
    assert result.unattributed_clicks > 0, "the simulation produced no unattributed traffic"
    load_window(fresh_db, at(START), at(LAST + timedelta(days=1)), slice_hours=24)

    # When the last cycle builds the mart (a first build: every day)
    build(fresh_db, tmp_path, LAST)

    # Then its unattributed clicks per day and route are the simulator's count, and its
    # attributed clicks per rental-day (total and invalid) the simulator's truth
    unattributed = mart_clicks(fresh_db, attributed=False)
    assert {key: total for key, (total, _) in unattributed.items()} == result.unattributed
    truth = {
        (row.rental_id, row.click_date): (row.total_clicks, row.invalid_clicks)
        for row in result.truth_rows
        if row.cycle_date == LAST and row.total_clicks
    }
    assert mart_clicks(fresh_db, attributed=True) == truth
