"""`clicks measure`: ADR-0002's proof-of-concept numbers, against whatever AE the settings name.

For each window (in days, ending at the newest point in the dataset) it runs the nightly's
aggregate shape several times and reports p50/p95 latency and the rows AE read; it also reports
the ingestion rate the dataset shows (points per second, on average and in the busiest minute).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from loaders.ae_client import AEClient
from loaders.errors import TerminalError
from loaders.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WindowMeasurement:
    days: int
    runs: int
    p50_ms: float
    p95_ms: float
    rows_read: int
    result_rows: int


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    del name
    parser.add_argument("--windows", default="1,5,30", help="window lengths in days (1,5,30)")
    parser.add_argument("--runs", type=int, default=5, help="runs per window (5)")


def run(args: argparse.Namespace) -> int:
    settings = Settings.load(require=("ae_sql_url", "ae_api_token"))
    windows = _parse_windows(args.windows)
    if args.runs < 1:
        raise TerminalError("--runs must be at least 1")
    with AEClient(settings, read_timeout=70.0) as client:
        newest = _newest_point(client, settings)
        rate = _ingestion(client, settings)
        results = [_measure_window(client, settings, newest, days, args.runs) for days in windows]
    print(f"dataset {settings.ae_dataset}: newest point {newest:%Y-%m-%d %H:%M:%S} UTC")
    print(
        f"ingestion: {rate[0]:.4g} points/s on average, {rate[1]:.4g} points/s in the busiest"
        " minute"
    )
    print(
        f"{'window':>7} {'runs':>5} {'p50 ms':>9} {'p95 ms':>9} {'rows read':>11} {'rows out':>9}"
    )
    for item in results:
        print(
            f"{item.days:>6}d {item.runs:>5} {item.p50_ms:>9.1f} {item.p95_ms:>9.1f} "
            f"{item.rows_read:>11} {item.result_rows:>9}"
        )
    return 0


def _parse_windows(text: str) -> list[int]:
    try:
        windows = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise TerminalError(f"--windows {text!r}: give whole days separated by commas") from None
    if not windows or min(windows) < 1 or max(windows) > 90:
        raise TerminalError(
            f"--windows {text!r}: each window must be 1..90 days (AE keeps 3 months)"
        )
    return windows


def _query(client: AEClient, text: str) -> list[dict]:
    """One statement through the loader's AE client: same auth, error classes and redaction.

    No retries: a measurement that needed one would report a latency nobody saw.
    """
    with client.query(text) as result:
        return list(result.rows())


def _newest_point(client: AEClient, settings: Settings) -> datetime:
    rows = _query(
        client,
        f"SELECT max(timestamp) AS newest, count() AS points FROM {settings.ae_dataset}"
        " FORMAT JSON",
    )
    if not rows or int(rows[0]["points"]) == 0:
        raise TerminalError(f"dataset {settings.ae_dataset} holds no points: run `clicks simulate`")
    return datetime.fromisoformat(str(rows[0]["newest"]))


def _ingestion(client: AEClient, settings: Settings) -> tuple[float, float]:
    dataset = settings.ae_dataset
    totals = _query(
        client,
        "SELECT count() AS points, toUInt32(max(timestamp)) - toUInt32(min(timestamp))"
        f" AS span FROM {dataset} FORMAT JSON",
    )[0]
    peak = _query(
        client,
        "SELECT toStartOfMinute(timestamp) AS minute, count() AS points "
        f"FROM {dataset} GROUP BY minute ORDER BY points DESC LIMIT 1 FORMAT JSON",
    )
    average = int(totals["points"]) / max(1, int(totals["span"]))
    return average, (int(peak[0]["points"]) / 60.0 if peak else 0.0)


def _measure_window(
    client: AEClient, settings: Settings, newest: datetime, days: int, runs: int
) -> WindowMeasurement:
    end = newest.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    start = end - timedelta(days=days)
    text = (
        "SELECT index1 AS rental_id, toStartOfDay(timestamp) AS day,"
        " SUM(_sample_interval * double1) AS clicks, count() AS rows_read"
        f" FROM {settings.ae_dataset}"
        f" WHERE timestamp >= toDateTime('{start:%Y-%m-%d %H:%M:%S}')"
        f" AND timestamp < toDateTime('{end:%Y-%m-%d %H:%M:%S}')"
        " GROUP BY rental_id, day FORMAT JSON"
    )
    latencies, rows = [], []
    for _ in range(runs):
        started = time.perf_counter()
        rows = _query(client, text)
        latencies.append((time.perf_counter() - started) * 1000)
    log.info("window %sd: %s runs, median %.1f ms", days, runs, statistics.median(latencies))
    return WindowMeasurement(
        days=days,
        runs=runs,
        p50_ms=statistics.median(latencies),
        p95_ms=_percentile(latencies, 0.95),
        rows_read=sum(int(r["rows_read"]) for r in rows),
        result_rows=len(rows),
    )


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]
