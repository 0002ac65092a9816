"""The billing gate: an export of cycle D runs only on a dbt build of D whose checks all passed.

The dbt hooks record each invocation in ``ops.dbt_invocations`` and each node's outcome in
``ops.dbt_node_results`` (``blocks_export`` marks the nodes upstream of ``billing_export``). The
gate reads the latest ``build`` of the cycle and refuses when that build failed, when any blocking
node did not end in success, pass, warn or no-op, or when ``billing_export`` itself did not succeed.
Every decision, allowed or not, is written to ``ops.export_gate_decisions``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime

import psycopg

from loaders.errors import GateRefusedError

log = logging.getLogger(__name__)

# no-op is what dbt reports for a node with nothing to execute; the dbt hook counts it as ok too.
PASSING = ("success", "pass", "warn", "no-op")
EXPORT_MODEL = "billing_export"


@dataclass(frozen=True)
class GateDecision:
    allowed: bool
    invocation_id: str | None
    failing: list[str] = field(default_factory=list)
    reason: str = ""

    def raise_if_refused(self, cycle_date: date) -> None:
        if not self.allowed:
            raise GateRefusedError(
                f"billing gate refused the export of cycle {cycle_date}: {self.reason}; "
                f"fix that, rerun `dbt build` with run_date {cycle_date}, then export again"
            )


def _latest_build(
    conn: psycopg.Connection, cycle_date: date, built_after: datetime | None
) -> tuple[str, bool] | None:
    """The newest build of the cycle that included the export model.

    A narrower build afterwards (the nightly's reconciliation step, an analyst's `--select`)
    neither tested nor rebuilt billing_export, so it can neither open nor close the gate.
    """
    return conn.execute(
        "select invocations.invocation_id, invocations.success"
        " from ops.dbt_invocations as invocations"
        " where invocations.run_date = %s and invocations.command = 'build'"
        " and invocations.started_at >= coalesce(%s, '-infinity'::timestamptz)"
        " and exists (select 1 from ops.dbt_node_results as results"
        "   where results.invocation_id = invocations.invocation_id"
        "   and results.resource_type = 'model' and results.unique_id like %s)"
        " order by invocations.started_at desc, invocations.finished_at desc limit 1",
        (cycle_date, built_after, f"model.%.{EXPORT_MODEL}"),
    ).fetchone()


def _failing_nodes(conn: psycopg.Connection, invocation_id: str) -> tuple[list[str], int]:
    """Checks and models upstream of the export that failed, and how many were skipped.

    Skipped nodes are a consequence, not a cause: dbt skips what sits downstream of a failure,
    so only the failures are named and the skipped ones are counted.
    """
    rows = conn.execute(
        "select unique_id, status, message from ops.dbt_node_results"
        " where invocation_id = %s and blocks_export and status <> all(%s)"
        " order by unique_id",
        (invocation_id, list(PASSING)),
    ).fetchall()
    described = [f"{uid} ({status}: {message or 'no message'})" for uid, status, message in rows]
    failing = [text for text, row in zip(described, rows, strict=True) if row[1] != "skipped"]
    skipped = len(described) - len(failing)
    # A skipped check with no failure behind it still did not run: name those instead.
    return (failing or described), (skipped if failing else 0)


def _export_model_status(conn: psycopg.Connection, invocation_id: str) -> str | None:
    row = conn.execute(
        "select status from ops.dbt_node_results where invocation_id = %s"
        " and resource_type = 'model' and (unique_id = %s or unique_id like %s)",
        (invocation_id, EXPORT_MODEL, f"model.%.{EXPORT_MODEL}"),
    ).fetchone()
    return row[0] if row else None


def decide(
    conn: psycopg.Connection, cycle_date: date, *, built_after: datetime | None = None
) -> GateDecision:
    """The decision alone, without recording it.

    ``built_after`` lets the nightly insist on the build it just ran: when that build died before
    dbt could record its results, an older passing build of the same cycle must not stand in.
    """
    build = _latest_build(conn, cycle_date, built_after)
    if build is None:
        since = f" since {built_after:%Y-%m-%d %H:%M:%S} UTC" if built_after else ""
        return GateDecision(
            False, None, [], f"no complete dbt build recorded for run_date {cycle_date}{since}"
        )
    invocation_id, success = build
    failing, skipped = _failing_nodes(conn, invocation_id)
    if failing:
        names = "; ".join(failing)
        consequence = f" ({skipped} node(s) downstream of them skipped)" if skipped else ""
        return GateDecision(
            False,
            invocation_id,
            failing,
            f"{len(failing)} check(s) upstream of {EXPORT_MODEL} failed{consequence}: {names}",
        )
    if not success:
        return GateDecision(False, invocation_id, [], f"dbt build {invocation_id} did not succeed")
    model_status = _export_model_status(conn, invocation_id)
    if model_status != "success":
        return GateDecision(
            False,
            invocation_id,
            [],
            f"model {EXPORT_MODEL} ended as {model_status or 'not run'} in build {invocation_id}",
        )
    return GateDecision(True, invocation_id, [], f"build {invocation_id} passed every check")


def check(
    conn: psycopg.Connection, cycle_date: date, *, built_after: datetime | None = None
) -> GateDecision:
    """Decide whether cycle D may be exported, and record the decision."""
    decision = decide(conn, cycle_date, built_after=built_after)
    conn.execute(
        "insert into ops.export_gate_decisions"
        " (cycle_date, invocation_id, allowed, failing_tests, reason) values (%s, %s, %s, %s, %s)",
        (cycle_date, decision.invocation_id, decision.allowed, decision.failing, decision.reason),
    )
    conn.commit()
    level = logging.INFO if decision.allowed else logging.WARNING
    log.log(
        level,
        "gate for cycle %s: %s (%s)",
        cycle_date,
        "allowed" if decision.allowed else "refused",
        decision.reason,
    )
    return decision
