"""`clicks measure`: ADR-0002's latency and ingestion figures, over the real AE emulator.

Given points whose count and spread the test knows, when `clicks measure` runs, then the rows it
says AE read and the ingestion rates it prints are the ones those points imply.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from loaders.emulators import ae_admin

NEWEST = datetime(2026, 11, 30, 23, 0, tzinfo=UTC)


def points(count: int, *, start: datetime, step: timedelta) -> list[dict]:
    return [
        {"blobs": ["h", "/p", "rt_1", "rn_1"], "doubles": [1, 0], "indexes": [f"rl_{i % 3}"],
         "timestamp": (start + i * step).isoformat().replace("+00:00", "Z")}
        for i in range(count)
    ]  # fmt: skip


def measure(settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AE_SQL_URL": settings.ae_sql_url, "AE_API_TOKEN": settings.ae_api_token}
    return subprocess.run(
        [str(Path(sys.executable).with_name("clicks")), "measure", *args],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_measure_reports_rows_read_per_window_and_the_ingestion_rate(settings, ae_reset):
    # given 120 points in the last day (one every 10 minutes), a burst of 30 within one minute,
    # and 60 hourly ones from 4 days 22 hours before the newest, all inside the 5-day window
    base = ae_reset
    recent = points(120, start=NEWEST - timedelta(minutes=10 * 119), step=timedelta(minutes=10))
    oldest = NEWEST - timedelta(days=4, hours=22)
    older = points(60, start=oldest, step=timedelta(hours=1))
    burst = points(30, start=NEWEST - timedelta(hours=3, minutes=-3), step=timedelta(seconds=1))
    ae_admin.write_points(base, settings.ae_dataset, recent + burst + older)

    # when measuring the 1- and 5-day windows twice each
    result = measure(settings, "--windows", "1,5", "--runs", "2")

    # then each window reads exactly the points inside it, and the rates follow from the spread
    assert result.returncode == 0, result.stderr
    rows = dict(re.findall(r"^\s+(\d+)d\s+2\s+[\d.]+\s+[\d.]+\s+(\d+)", result.stdout, re.M))
    assert rows == {"1": "150", "5": "210"}
    average, peak = re.search(
        r"ingestion: ([\d.]+) points/s on average, ([\d.]+) points/s", result.stdout
    ).groups()
    assert float(average) == float(f"{210 / (NEWEST - oldest).total_seconds():.4g}")
    assert float(peak) == float(f"{30 / 60:.4g}")


def test_measure_refuses_bad_windows_before_asking_ae(settings):
    result = measure(settings, "--windows", "1,x")
    assert result.returncode == 1
    assert "--windows '1,x'" in result.stderr
