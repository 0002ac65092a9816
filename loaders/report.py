"""What an operator reads after a cycle: figures from Postgres and a table per cycle."""

from __future__ import annotations

import dataclasses
import logging
import sys
from datetime import date, timedelta
from typing import TYPE_CHECKING

from loaders.db import connect
from loaders.errors import ClicksError
from loaders.settings import Settings

if TYPE_CHECKING:
    from loaders.nightly import CycleReport

log = logging.getLogger(__name__)

# Each figure is one query; a missing relation (first run, failed build) reads as "-".
FIGURES: dict[str, tuple[str, str]] = {
    "landed": (
        "raw.ae_clicks_hourly",
        "select coalesce(sum(clicks), 0) from raw.ae_clicks_hourly "
        "where click_hour >= %(day)s and click_hour < %(next_day)s",
    ),
    "billable": (
        "marts.click_rollups",
        "select coalesce(sum(valid_clicks), 0) from marts.click_rollups where click_date = %(day)s",
    ),
    "booked": (
        "marts.click_adjustments",
        "select coalesce(sum(valid_clicks_delta), 0) from marts.click_adjustments "
        "where booked_cycle = %(day)s",
    ),
    "adjustments": (
        "marts.click_adjustments",
        "select count(*) from marts.click_adjustments "
        "where booked_cycle = %(day)s and entry_kind = 'adjustment'",
    ),
    "exported": (
        "billing.meter_event_exports",
        "select coalesce(sum(value), 0) from billing.meter_event_exports "
        "where booked_cycle = %(day)s and status = 'sent'",
    ),
    "reconciliation": (
        "marts.reconciliation_daily",
        "select case when count(*) = 0 then 'none' when bool_and(status <> 'mismatch') "
        "then 'green' else 'RED' end from marts.reconciliation_daily where run_date = %(day)s",
    ),
}


def cycle_figures(settings: Settings, cycle: date) -> dict[str, object]:
    params = {"day": cycle, "next_day": cycle + timedelta(days=1)}
    figures: dict[str, object] = {}
    try:
        with connect(settings, autocommit=True) as conn:
            for name, (relation, query) in FIGURES.items():
                if conn.execute("select to_regclass(%s)", (relation,)).fetchone()[0] is None:
                    figures[name] = "-"
                    continue
                figures[name] = conn.execute(query, params).fetchone()[0]
    except (ClicksError, Exception) as exc:
        log.warning("cycle %s: could not read figures: %s", cycle, type(exc).__name__)
    return figures


def as_detail(summary: object) -> dict[str, object]:
    """A step's summary dataclass as flat key=value detail for logs and ops.nightly_runs."""
    if dataclasses.is_dataclass(summary) and not isinstance(summary, type):
        return {
            key: value
            for key, value in dataclasses.asdict(summary).items()
            if isinstance(value, int | float | str | bool)
        }
    return {}


def print_cycle_table(reports: list[CycleReport]) -> None:
    """Print the header with the first cycle of a run, then one row per finished cycle."""
    columns = ("cycle", "outcome", *FIGURES, "seconds")
    item = reports[-1]
    row = (
        str(item.cycle_date),
        item.outcome,
        *(str(item.figures.get(name, "-")) for name in FIGURES),
        f"{sum(step.seconds for step in item.steps):.1f}",
    )
    lines = [_line(columns)] if len(reports) == 1 else []
    lines.append(_line(row))
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()


def _line(values: tuple[str, ...]) -> str:
    widths = (10, 9, 8, 8, 8, 11, 8, 14, 7)
    return "  ".join(value.ljust(width) for value, width in zip(values, widths, strict=True))
