"""`clicks nightly`: one cycle per UTC day, load → dbt build → gate → export → reconcile.

Exit codes: 0 the cycle is done, 3 the gate refused the export, 1 any other failure. A second
nightly started while one runs refuses at once: the lock is a Postgres advisory lock, so it holds
across machines that share the database, and dies with the process that held it.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import psycopg

from loaders import dbt_runner, report
from loaders.db import PIPELINE_SCHEMAS, connect, ensure_schemas
from loaders.errors import (
    ClicksError,
    ConcurrentRunError,
    GateRefusedError,
    ReplayRefusedError,
    TerminalError,
)
from loaders.progress import terminal_progress
from loaders.settings import Settings

log = logging.getLogger(__name__)

NIGHTLY_LOCK_KEY = 0x636C69636B73  # "clicks": one nightly per database
RETENTION_DAYS = 90


@dataclass
class Step:
    name: str
    seconds: float
    detail: dict[str, object]


@dataclass
class CycleReport:
    cycle_date: date
    run_id: uuid.UUID
    outcome: str = "running"
    exit_code: int | None = None
    steps: list[Step] = field(default_factory=list)
    figures: dict[str, object] = field(default_factory=dict)
    error: str | None = None


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    del name
    when = parser.add_mutually_exclusive_group()
    when.add_argument(
        "--date", type=date.fromisoformat, help="the cycle (UTC day); default yesterday"
    )
    when.add_argument(
        "--from",
        dest="from_date",
        type=date.fromisoformat,
        help="first cycle of a range (with --to)",
    )
    parser.add_argument(
        "--to", dest="to_date", type=date.fromisoformat, help="last cycle of a range"
    )
    parser.add_argument(
        "--lookback-days",
        type=int,
        default=3,
        help="days of click data each cycle re-reads (default 3)",
    )
    parser.add_argument(
        "--slice-hours",
        type=int,
        default=24,
        help="hours per AE query when landing (default 24; rows stay hourly)",
    )
    parser.add_argument(
        "--replay",
        action="store_true",
        help="allow a cycle older than the newest booked one (see docs/ledger.md)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="build and gate, but print the export instead of sending it",
    )


def run(args: argparse.Namespace) -> int:
    cycles = _cycles(args)
    settings = Settings.load(require=("database_url", "ae_sql_url", "ae_api_token"))
    reports = []
    with nightly_lock(settings):
        for cycle in cycles:
            result = run_cycle(
                settings,
                cycle,
                lookback_days=args.lookback_days,
                slice_hours=args.slice_hours,
                replay=args.replay,
                dry_run=args.dry_run,
            )
            reports.append(result)
            report.print_cycle_table(reports)
            if result.exit_code:
                return result.exit_code
    return 0


def _cycles(args: argparse.Namespace) -> list[date]:
    if args.from_date or args.to_date:
        if not (args.from_date and args.to_date):
            raise TerminalError("--from and --to go together: give both, or use --date")
        if args.to_date < args.from_date:
            raise TerminalError(f"--to {args.to_date} is before --from {args.from_date}")
        span = (args.to_date - args.from_date).days
        return [args.from_date + timedelta(days=offset) for offset in range(span + 1)]
    return [args.date or (datetime.now(UTC).date() - timedelta(days=1))]


@contextmanager
def nightly_lock(settings: Settings) -> Iterator[None]:
    conn = connect(settings, autocommit=True)
    try:
        ensure_schemas(conn, PIPELINE_SCHEMAS)
        if not conn.execute("select pg_try_advisory_lock(%s)", (NIGHTLY_LOCK_KEY,)).fetchone()[0]:
            raise ConcurrentRunError(_holder_message(conn))
        yield
    finally:
        conn.close()


def _holder_message(conn: psycopg.Connection) -> str:
    row = conn.execute(
        "select cycle_date, started_at from ops.nightly_runs where outcome = 'running' "
        "order by started_at desc limit 1"
    ).fetchone()
    holder = f" (cycle {row[0]}, started {row[1]:%Y-%m-%d %H:%M} UTC)" if row else ""
    return (
        f"another `clicks nightly` is running against this database{holder}; "
        "wait for it to finish, this run changed nothing"
    )


def run_cycle(
    settings: Settings,
    cycle: date,
    *,
    lookback_days: int = 3,
    slice_hours: int = 24,
    replay: bool = False,
    dry_run: bool = False,
) -> CycleReport:
    """Run every step of one cycle, record it in ops.nightly_runs, never raise a ClicksError."""
    result = CycleReport(cycle_date=cycle, run_id=uuid.uuid4())
    _record(settings, result)
    log.info("cycle %s: started (run %s)", cycle, result.run_id)
    try:
        _step(result, "guard", lambda: _guard_order(settings, cycle, replay))
        _step(result, "load", lambda: _load(settings, cycle, lookback_days, slice_hours))
        built_after = datetime.now(UTC)
        _step(result, "dbt build", lambda: _build(settings, cycle, lookback_days, replay))
        _step(result, "export", lambda: _export(settings, cycle, dry_run, built_after))
        _step(result, "reconcile", lambda: _reconcile(settings, cycle, lookback_days, replay))
        result.outcome, result.exit_code = "succeeded", 0
    except GateRefusedError as exc:
        result.outcome, result.exit_code, result.error = "refused", exc.exit_code, str(exc)
        log.error("cycle %s: %s", cycle, exc)
    except ClicksError as exc:
        result.outcome, result.exit_code, result.error = "failed", exc.exit_code, str(exc)
        log.error("cycle %s: failed: %s", cycle, exc)
    result.figures = report.cycle_figures(settings, cycle)
    _record(settings, result)
    log.info(
        "cycle %s: %s in %.1f s", cycle, result.outcome, sum(step.seconds for step in result.steps)
    )
    return result


def _step(result: CycleReport, name: str, action: Callable[[], dict[str, object] | None]) -> None:
    started = time.monotonic()
    try:
        detail = action() or {}
    except ClicksError as exc:
        result.steps.append(Step(name, time.monotonic() - started, {"error": str(exc)}))
        raise
    result.steps.append(Step(name, time.monotonic() - started, detail))
    log.info(
        "cycle %s: %s done in %.1f s %s",
        result.cycle_date,
        name,
        result.steps[-1].seconds,
        _brief(detail),
    )


def _brief(detail: dict[str, object]) -> str:
    return " ".join(f"{key}={value}" for key, value in detail.items() if key != "error")


def _guard_order(settings: Settings, cycle: date, replay: bool) -> dict[str, object]:
    with connect(settings) as conn:
        exists = conn.execute("select to_regclass('marts.click_adjustments')").fetchone()[0]
        newest = None
        if exists:
            newest = conn.execute(
                "select max(booked_cycle) from marts.click_adjustments"
            ).fetchone()[0]
    if newest and cycle < newest and not replay:
        raise ReplayRefusedError(
            f"cycle {cycle} is older than the newest booked cycle {newest}: billed history is "
            "never rewritten; rerun with --replay only as docs/ledger.md describes"
        )
    return {"newest_booked": str(newest) if newest else "none"}


def load_window_for(
    settings: Settings, cycle: date, lookback_days: int
) -> tuple[datetime, datetime]:
    """The lookback days, stretched back to the last landed hour if cycles were skipped."""
    end = datetime.combine(cycle + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    start = end - timedelta(days=lookback_days)
    with connect(settings) as conn:
        landed = conn.execute(
            "select max(slice_end) from raw.ae_loads"
            " where status = 'succeeded' and slice_end <= %s",
            (end,),
        ).fetchone()[0]
    if landed is not None and landed < start:
        start = max(landed, end - timedelta(days=RETENTION_DAYS))
    return start, end


def _load(settings: Settings, cycle: date, lookback_days: int, slice_hours: int) -> dict:
    from loaders.landing import load_window

    start, end = load_window_for(settings, cycle, lookback_days)
    summary = load_window(
        settings, start, end, slice_hours=slice_hours, progress=terminal_progress("  load")
    )
    return {"window": f"{start:%Y-%m-%d %H:%M}..{end:%Y-%m-%d %H:%M}", **report.as_detail(summary)}


def _build(settings: Settings, cycle: date, lookback_days: int, replay: bool) -> dict:
    variables = {"lookback_days": lookback_days, "allow_replay": replay}
    result = dbt_runner.run_dbt(settings, ["build"], run_date=cycle, extra_vars=variables)
    if not result.ok:
        # A failed test is the gate's business (exit 3), which names every failing check.
        log.warning("cycle %s: dbt build did not pass: %s", cycle, result.summary or "see logs")
    return {"dbt": result.summary, "passed": result.ok}


def _export(settings: Settings, cycle: date, dry_run: bool, built_after: datetime) -> dict:
    from loaders.export import export_cycle

    summary = export_cycle(settings, cycle, dry_run=dry_run, built_after=built_after)
    if not summary.ok:
        raise TerminalError(
            f"cycle {cycle}: the export did not finish ({summary.failed} failed, "
            f"{summary.stale_pending} pending over 24 h); see billing.meter_event_exports"
        )
    return report.as_detail(summary)


# After the export only the reconciliation marts are rebuilt, with their tests, so they compare
# what Stripe acknowledged with the ledger for this cycle too. The gate ignores such a narrow
# build: it never included billing_export.
RECONCILIATION_MODELS = ("reconciliation_daily", "reconciliation_rentals")


def _reconcile(settings: Settings, cycle: date, lookback_days: int, replay: bool) -> dict:
    # The same vars as the build step, so dbt reuses its partial parse instead of starting over.
    result = dbt_runner.run_dbt(
        settings,
        ["build", "--select", *RECONCILIATION_MODELS],
        run_date=cycle,
        extra_vars={"lookback_days": lookback_days, "allow_replay": replay},
    )
    if not result.ok:
        raise TerminalError(
            f"cycle {cycle}: reconciliation after the export failed ({result.summary}); "
            "query marts.reconciliation_daily for the differing days"
        )
    return {"dbt": result.summary}


def _record(settings: Settings, result: CycleReport) -> None:
    steps = [{"name": s.name, "seconds": round(s.seconds, 3), **s.detail} for s in result.steps]
    with connect(settings) as conn:
        conn.execute(
            """
            insert into ops.nightly_runs (run_id, cycle_date, outcome, exit_code, steps, error)
            values (%(run_id)s, %(cycle)s, %(outcome)s, %(exit_code)s, %(steps)s, %(error)s)
            on conflict (run_id) do update set outcome = excluded.outcome,
                exit_code = excluded.exit_code, steps = excluded.steps, error = excluded.error,
                finished_at = case when excluded.outcome = 'running' then null else now() end
            """,
            {
                "run_id": result.run_id,
                "cycle": result.cycle_date,
                "outcome": result.outcome,
                "exit_code": result.exit_code,
                "steps": json.dumps(steps, default=str),
                "error": result.error,
            },
        )
