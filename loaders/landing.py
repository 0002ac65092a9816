"""`clicks load`: land AE's hour-grain aggregates of a time window in ``raw.*``.

The window is cut into slices (one hour by default). Each slice is one load: its rows stream
from AE's response straight into a COPY, inside one transaction that first deletes whatever an
earlier landing of the same time range left, so readers see either the old slice or the new one,
never half of it or both. Every load is logged in ``raw.ae_loads``, failed attempts included, on a
second autocommit connection that also holds the per-dataset advisory lock.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import psycopg
from psycopg import sql

from loaders.ae_client import AEClient, RetryPolicy, with_retries
from loaders.contract import Field, load_contract
from loaders.db import connect, ensure_schemas
from loaders.errors import (
    BadValueError,
    ClicksError,
    ConcurrentRunError,
    ConfigError,
    ResultTooLargeError,
    TerminalError,
    TransientError,
)
from loaders.progress import terminal_progress
from loaders.settings import DATASET_PATTERN, Settings, redact

log = logging.getLogger(__name__)

CLICK_KIND = "click"
INVALIDATION_KIND = "invalidation"
CLICK_DIMENSIONS = (
    "route_id",
    "renter_id",
    "rental_id",
    "owner_id",
    "country",
    "asn",
    "bot_bucket",
    "referrer_domain",
    "device_class",
)
INVALIDATION_DIMENSIONS = ("route_id", "renter_id", "rental_id", "owner_id")
# Both numbers are arbitrary but fixed: every loader of every version must agree on them.
LOCK_CLASS = 0x4145
MIN_SPLIT = timedelta(minutes=5)


@dataclass(frozen=True)
class Slice:
    start: datetime
    end: datetime

    def __str__(self) -> str:
        return f"[{self.start:%Y-%m-%dT%H:%MZ}, {self.end:%Y-%m-%dT%H:%MZ})"


@dataclass
class LoadSummary:
    start: datetime
    end: datetime
    slices: int = 0
    click_rows: int = 0
    invalidation_rows: int = 0
    clicks: int = 0
    invalidated_clicks: int = 0
    retries: int = 0
    seconds: float = 0.0
    load_ids: list[UUID] = field(default_factory=list)


# --- The window ----------------------------------------------------------------------------------


def whole_utc_hour(value: datetime | str, what: str) -> datetime:
    """A window bound: an aware (or naive = UTC) moment on a whole hour, returned in UTC."""
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    except ValueError:
        raise TerminalError(
            f"{what} {value!r} is not an ISO 8601 time like 2026-11-01T00:00:00Z"
        ) from None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    if moment != moment.replace(minute=0, second=0, microsecond=0):
        raise TerminalError(f"{what} {moment.isoformat()} is not a whole UTC hour")
    return moment


def split_window(start: datetime, end: datetime, slice_hours: int) -> list[Slice]:
    if end <= start:
        raise TerminalError(f"the window [{start.isoformat()}, {end.isoformat()}) is empty")
    if slice_hours < 1:
        raise TerminalError(f"--slice-hours must be at least 1, not {slice_hours}")
    step, slices, cursor = timedelta(hours=slice_hours), [], start
    while cursor < end:
        slices.append(Slice(cursor, min(cursor + step, end)))
        cursor += step
    return slices


# --- The SQL sent to AE --------------------------------------------------------------------------


def checked_dataset(name: str) -> str:
    # AE has no parameter binding, so the name goes into the text only once it is an identifier.
    if not DATASET_PATTERN.fullmatch(name):
        raise ConfigError(f"AE_DATASET {name!r} is not a plain identifier")
    return name


def ae_time(moment: datetime) -> str:
    if moment.tzinfo is None or moment.utcoffset() != timedelta(0):
        raise TerminalError(f"{moment!r} is not a UTC time; AE bounds are written in UTC")
    return f"toDateTime('{moment:%Y-%m-%d %H:%M:%S}')"


def _where(start: datetime, end: datetime) -> str:
    return f"timestamp >= {ae_time(start)} AND timestamp < {ae_time(end)}"


def clicks_sql(dataset: str, start: datetime, end: datetime) -> str:
    """Click points of [start, end), weighted by their sample interval, per hour and dimension."""
    contract = load_contract()
    kind = contract.blob("event_kind").column
    dims = [f"{contract.blob(name).column} AS {name}" for name in CLICK_DIMENSIONS]
    clicks, invalid = contract.double("clicks").column, contract.double("invalid_clicks").column
    return "\n".join(
        [
            "SELECT",
            "    toStartOfHour(timestamp) AS click_hour,",
            *(f"    {dim}," for dim in dims),
            # An older Worker leaves event_kind empty: its points are clicks.
            f"    if({kind} = '', '{CLICK_KIND}', {kind}) AS event_kind,",
            f"    SUM(_sample_interval * {clicks}) AS clicks,",
            f"    SUM(_sample_interval * {invalid}) AS invalid_clicks,",
            "    count() AS sampled_rows,",
            "    max(_sample_interval) AS max_sample_interval",
            f"FROM {checked_dataset(dataset)}",
            f"WHERE {_where(start, end)}",
            f"    AND {kind} != '{INVALIDATION_KIND}'",
            f"GROUP BY click_hour, {', '.join(CLICK_DIMENSIONS)}, event_kind",
            "FORMAT JSON",
        ]
    )


def invalidations_sql(dataset: str, start: datetime, end: datetime) -> str:
    """Invalidation points written in [start, end), per write hour and original click time."""
    contract = load_contract()
    col = {name: contract.blob(name).column for name in ("event_kind", "original_click_at")}
    keys = (*INVALIDATION_DIMENSIONS, "invalidation_reason")
    dims = [f"{contract.blob(name).column} AS {name}" for name in keys]
    invalid = contract.double("invalid_clicks").column
    return "\n".join(
        [
            "SELECT",
            "    toStartOfHour(timestamp) AS written_hour,",
            # Kept as written and parsed by the loader, which checks the format on the way.
            f"    {col['original_click_at']} AS original_click_at,",
            *(f"    {dim}," for dim in dims),
            f"    SUM(_sample_interval * {invalid}) AS invalidated_clicks,",
            "    count() AS sampled_rows,",
            "    max(_sample_interval) AS max_sample_interval",
            f"FROM {checked_dataset(dataset)}",
            f"WHERE {_where(start, end)}",
            f"    AND {col['event_kind']} = '{INVALIDATION_KIND}'",
            f"GROUP BY written_hour, original_click_at, {', '.join(keys)}",
            "FORMAT JSON",
        ]
    )


# --- Checking values before they land ------------------------------------------------------------


def whole_count(value: Any, minimum: int) -> int:
    """An exact non-negative count: int, integral float or digit string (AE may quote int64)."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a count")
    integral = isinstance(value, float) and value.is_integer()
    digits = isinstance(value, str) and value.isascii() and value.lstrip("-").isdigit()
    if not (isinstance(value, int) or integral or digits):
        raise ValueError(f"{value!r} is not a whole number")
    number = int(value)
    if number < minimum:
        raise ValueError(f"{number} is below {minimum}")
    return number


def utc_hour(value: Any) -> datetime:
    """An hour from AE: naive 'YYYY-MM-DD HH:MM:SS' is UTC."""
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a date-time string")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a date-time") from None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    if moment != moment.replace(minute=0, second=0, microsecond=0):
        raise ValueError(f"{value!r} is not a whole hour")
    return moment


def iso_utc_hour(value: Any) -> datetime:
    """The hour of an ISO 8601 UTC time such as 2026-11-02T13:05:00Z."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{value!r} is not an ISO 8601 UTC time (an invalidation needs one)")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO 8601 UTC time") from None
    if moment.utcoffset() != timedelta(0):
        raise ValueError(f"{value!r} does not say it is UTC (end it with Z)")
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def contract_text(spec: Field, *, allow_empty: bool) -> Callable[[Any], str]:
    """A checker for one blob: text, no NUL, within max_length, matching pattern or values."""

    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError(f"{value!r} is not text")
        if "\x00" in value:
            raise ValueError("contains a NUL byte")
        if spec.max_length is not None and len(value) > spec.max_length:
            raise ValueError(f"is {len(value)} characters long, over {spec.max_length}")
        if spec.pattern is not None and not spec.pattern.fullmatch(value):
            raise ValueError(f"{value!r} does not match {spec.pattern.pattern}")
        if spec.values and value not in spec.values and not (allow_empty and value == ""):
            raise ValueError(f"{value!r} is not one of {', '.join(spec.values)}")
        return value

    return check


def click_kind(value: Any) -> str:
    if value != CLICK_KIND:
        allowed = ", ".join(load_contract().blob("event_kind").values)
        raise ValueError(f"{value!r} is not a known event kind ({allowed}; empty means click)")
    return value


# --- The two landing tables ----------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """One landing table: its query, its columns, and how a row of AE's answer is checked."""

    name: str
    table: str
    hour: str
    keys: tuple[str, ...]
    measures: tuple[str, ...]
    query: Callable[[str, datetime, datetime], str]
    # (column in AE's answer, column in the table or None to check only, checker)
    checks: tuple[tuple[str, str | None, Callable[[Any], Any]], ...]

    @property
    def columns(self) -> tuple[str, ...]:
        return self.keys + self.measures


def _blob_check(name: str) -> tuple[str, str, Callable[[Any], str]]:
    contract = load_contract()
    # Positions past the legacy layout are empty on points from an older Worker.
    late = contract.blob_position(name) > contract.legacy_blob_count
    return name, name, contract_text(contract.blob(name), allow_empty=late)


def _count_check(name: str, minimum: int) -> tuple[str, str, Callable[[Any], int]]:
    return name, name, lambda value: whole_count(value, minimum)


def build_kinds() -> tuple[Kind, Kind]:
    clicks = Kind(
        name="clicks",
        table="ae_clicks_hourly",
        hour="click_hour",
        keys=("click_hour", *CLICK_DIMENSIONS),
        measures=("clicks", "invalid_clicks", "sampled_rows", "max_sample_interval"),
        query=clicks_sql,
        checks=(
            ("click_hour", "click_hour", utc_hour),
            *(_blob_check(name) for name in CLICK_DIMENSIONS),
            ("event_kind", None, click_kind),
            _count_check("clicks", 0),
            _count_check("invalid_clicks", 0),
            _count_check("sampled_rows", 1),
            _count_check("max_sample_interval", 1),
        ),
    )
    invalidations = Kind(
        name="invalidations",
        table="ae_invalidations_hourly",
        hour="written_hour",
        keys=(
            "written_hour",
            "original_click_hour",
            *INVALIDATION_DIMENSIONS,
            "invalidation_reason",
        ),
        measures=("invalidated_clicks", "sampled_rows", "max_sample_interval"),
        query=invalidations_sql,
        checks=(
            ("written_hour", "written_hour", utc_hour),
            (
                "original_click_at",
                None,
                contract_text(load_contract().blob("original_click_at"), allow_empty=True),
            ),
            ("original_click_at", "original_click_hour", iso_utc_hour),
            *(_blob_check(name) for name in (*INVALIDATION_DIMENSIONS, "invalidation_reason")),
            _count_check("invalidated_clicks", 0),
            _count_check("sampled_rows", 1),
            _count_check("max_sample_interval", 1),
        ),
    )
    return clicks, invalidations


def check_row(kind: Kind, row: dict[str, Any], piece: Slice, number: int) -> tuple[Any, ...]:
    """The table values of one AE row, or BadValueError naming slice, row and column."""
    values: dict[str, Any] = {}
    for source, target, check in kind.checks:
        try:
            checked = check(row[source])
        except KeyError:
            problem = f"missing from AE's answer (got {', '.join(row)})"
            raise BadValueError(f"{_where_in(kind, piece, number, source)}: {problem}") from None
        except ValueError as exc:
            raise BadValueError(
                f"{_where_in(kind, piece, number, source)}: {exc}; nothing of this slice landed"
            ) from None
        if target is not None:
            values[target] = checked
    if not piece.start <= values[kind.hour] < piece.end:
        raise BadValueError(
            f"{_where_in(kind, piece, number, kind.hour)}: "
            f"{values[kind.hour].isoformat()} is outside the slice"
        )
    return tuple(values[column] for column in kind.columns)


def _where_in(kind: Kind, piece: Slice, number: int, column: str) -> str:
    return f"slice {piece}: {kind.name} row {number}, column {column}"


# --- The load log and the lock -------------------------------------------------------------------


@dataclass
class Attempts:
    load_id: UUID
    query_ids: list[str] = field(default_factory=list)
    retries: int = 0


def log_started(
    conn: psycopg.Connection, attempts: Attempts, dataset: str, piece: Slice, query_hash: str
) -> None:
    conn.execute(
        "insert into raw.ae_loads (load_id, dataset, slice_start, slice_end, status, query_hash)"
        " values (%s, %s, %s, %s, 'running', %s)",
        (attempts.load_id, dataset, piece.start, piece.end, query_hash),
    )


def log_attempt(conn: psycopg.Connection, attempts: Attempts, error: str, status: str) -> None:
    """Record a failed attempt; ``status`` stays running while retries remain."""
    conn.execute(
        "update raw.ae_loads set status = %s, error = %s, retries = %s, ae_query_ids = %s,"
        " finished_at = case when %s = 'failed' then now() end where load_id = %s",
        (status, error, attempts.retries, attempts.query_ids, status, attempts.load_id),
    )


def log_succeeded(conn: psycopg.Connection, attempts: Attempts, counts: dict[str, int]) -> None:
    # Runs inside the landing transaction, so "succeeded" commits together with the rows.
    conn.execute(
        "update raw.ae_loads set status = 'succeeded', error = null, retries = %s,"
        " ae_query_ids = %s, click_rows = %s, invalidation_rows = %s, finished_at = now()"
        " where load_id = %s",
        (
            attempts.retries,
            attempts.query_ids,
            counts["clicks"],
            counts["invalidations"],
            attempts.load_id,
        ),
    )


def lock_key(dataset: str) -> int:
    return int.from_bytes(hashlib.sha256(dataset.encode()).digest()[:4], "big") & 0x7FFFFFFF


def acquire_lock(conn: psycopg.Connection, dataset: str, timeout: float) -> None:
    """Take the dataset's advisory lock, waiting up to ``timeout`` seconds for its holder."""
    deadline = time.monotonic() + timeout
    while True:
        row = conn.execute(
            "select pg_try_advisory_lock(%s, %s)", (LOCK_CLASS, lock_key(dataset))
        ).fetchone()
        if row and row[0]:
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ConcurrentRunError(
                f"AE dataset {dataset!r} is being loaded by another loader "
                f"({describe_holder(conn, dataset)}); waited {timeout:g} s: "
                "let it finish or stop it, then run again"
            )
        time.sleep(min(0.25, remaining))


def describe_holder(conn: psycopg.Connection, dataset: str) -> str:
    holder = conn.execute(
        "select a.pid, a.application_name from pg_locks as l"
        " inner join pg_stat_activity as a on a.pid = l.pid"
        " where l.locktype = 'advisory' and l.granted and l.classid::bigint = %s"
        " and l.objid::bigint = %s and l.objsubid = 2",
        (LOCK_CLASS, lock_key(dataset)),
    ).fetchone()
    running = conn.execute(
        "select load_id, slice_start, slice_end, started_at from raw.ae_loads"
        " where dataset = %s and status = 'running' order by started_at desc limit 1",
        (dataset,),
    ).fetchone()
    parts = [f"Postgres pid {holder[0]}, {holder[1] or 'no application name'}"] if holder else []
    if running:
        parts.append(
            f"running load {running[0]} of slice {Slice(running[1], running[2])} "
            f"since {running[3]:%Y-%m-%d %H:%M:%S%z}"
        )
    return "; ".join(parts) or "holder unknown"


def mark_abandoned(conn: psycopg.Connection, dataset: str) -> None:
    # Whoever held the lock before us is gone, so a load still "running" will never finish.
    cur = conn.execute(
        "update raw.ae_loads set status = 'failed', finished_at = now(),"
        " error = coalesce(error || '; ', '') || 'abandoned: its loader stopped before finishing'"
        " where dataset = %s and status = 'running'",
        (dataset,),
    )
    if cur.rowcount:
        log.warning("marked %d abandoned running loads of %s as failed", cur.rowcount, dataset)


# --- Landing one slice ---------------------------------------------------------------------------


@dataclass
class Run:
    settings: Settings
    dataset: str
    client: AEClient
    data: psycopg.Connection
    log: psycopg.Connection
    policy: RetryPolicy
    min_split: timedelta
    kinds: tuple[Kind, Kind]


@dataclass
class Landed:
    rows: int = 0
    total: int = 0
    windows: int = 0


def delete_slice(conn: psycopg.Connection, kind: Kind, piece: Slice) -> None:
    conn.execute(
        sql.SQL("delete from {table} where {hour} >= %s and {hour} < %s").format(
            table=sql.Identifier("raw", kind.table), hour=sql.Identifier(kind.hour)
        ),
        (piece.start, piece.end),
    )


def copy_window(
    run: Run, kind: Kind, piece: Slice, *, window: Slice, attempts: Attempts, landed: Landed
) -> None:
    """Stream one AE answer into COPY; nothing is buffered beyond the row being written."""
    columns = ("load_id", "slice_start", "slice_end", *kind.columns)
    statement = sql.SQL("copy {table} ({columns}) from stdin").format(
        table=sql.Identifier("raw", kind.table),
        columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
    )
    text = kind.query(run.dataset, window.start, window.end)
    with (
        run.client.query(text, attempts.query_ids) as result,
        run.data.cursor() as cur,
        cur.copy(statement) as copy,
    ):
        for row in result.rows():
            landed.rows += 1
            values = check_row(kind, row, piece, landed.rows)
            copy.write_row((attempts.load_id, piece.start, piece.end, *values))
            landed.total += values[len(kind.keys)]
    landed.windows += 1


def copy_kind(run: Run, kind: Kind, piece: Slice, attempts: Attempts) -> Landed:
    """Land one kind of a slice, halving any window AE finds too large down to min_split."""
    landed, windows = Landed(), deque([piece])
    while windows:
        window = windows.popleft()
        try:
            copy_window(run, kind, piece, window=window, attempts=attempts, landed=landed)
        except ResultTooLargeError as exc:
            half = (window.end - window.start) / 2
            if half < run.min_split:
                raise TerminalError(
                    f"slice {piece}: AE finds {kind.name} of {window} too large even at "
                    f"{run.min_split}: {exc}"
                ) from None
            middle = (window.start + half).replace(microsecond=0)
            log.info(
                "slice %s: %s of %s too large for AE, querying halves", piece, kind.name, window
            )
            windows.extendleft([Slice(middle, window.end), Slice(window.start, middle)])
    return landed


def consolidate(conn: psycopg.Connection, kind: Kind, load_id: UUID) -> None:
    """Merge rows of one load that share a key: split windows and minute-level invalidations."""
    keys = ("load_id", "slice_start", "slice_end", *kind.keys)
    sums = [sql.SQL("sum({0})").format(sql.Identifier(name)) for name in kind.measures[:-1]]
    peak = sql.SQL("max({0})").format(sql.Identifier(kind.measures[-1]))
    conn.execute(
        sql.SQL(
            "with landed as (delete from {table} where load_id = %s returning *)"
            " insert into {table} ({keys}, {measures}) select {keys}, {aggregates} from landed"
            " group by {keys}"
        ).format(
            table=sql.Identifier("raw", kind.table),
            keys=sql.SQL(", ").join(map(sql.Identifier, keys)),
            measures=sql.SQL(", ").join(map(sql.Identifier, kind.measures)),
            aggregates=sql.SQL(", ").join([*sums, peak]),
        ),
        (load_id,),
    )


def land_once(run: Run, piece: Slice, attempts: Attempts) -> dict[str, Landed]:
    """One attempt at a slice: delete, copy both kinds, log success, all in one transaction."""
    with run.data.transaction():
        landed: dict[str, Landed] = {}
        for kind in run.kinds:
            delete_slice(run.data, kind, piece)
            landed[kind.name] = copy_kind(run, kind, piece, attempts)
            if kind.name == "invalidations" or landed[kind.name].windows > 1:
                consolidate(run.data, kind, attempts.load_id)
        log_succeeded(run.data, attempts, {name: done.rows for name, done in landed.items()})
    return landed


def land_slice(run: Run, piece: Slice) -> tuple[Attempts, dict[str, Landed]]:
    texts = [kind.query(run.dataset, piece.start, piece.end) for kind in run.kinds]
    attempts = Attempts(load_id=uuid4())
    log_started(
        run.log, attempts, run.dataset, piece, hashlib.sha256("\n".join(texts).encode()).hexdigest()
    )

    def on_retry(number: int, exc: TransientError) -> None:
        attempts.retries = number
        log_attempt(run.log, attempts, redact(str(exc), run.settings), "running")

    try:
        landed = with_retries(
            lambda: land_once(run, piece, attempts),
            run.policy,
            what=f"slice {piece}",
            on_retry=on_retry,
        )
    except ClicksError as exc:
        log_attempt(run.log, attempts, redact(str(exc), run.settings), "failed")
        raise
    except psycopg.Error as exc:
        reason = redact(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, run.settings)
        log_attempt(run.log, attempts, reason, "failed")
        raise TerminalError(f"slice {piece}: Postgres refused the landing: {reason}") from None
    return attempts, landed


# --- The window, end to end ----------------------------------------------------------------------


def load_window(
    settings: Settings,
    start: datetime | str,
    end: datetime | str,
    *,
    slice_hours: int = 1,
    lock_timeout: float = 30.0,
    policy: RetryPolicy | None = None,
    read_timeout: float = 90.0,
    min_split: timedelta = MIN_SPLIT,
    progress: Callable[[int, int], None] | None = None,
) -> LoadSummary:
    """Land [start, end) slice by slice; stop at the first slice that fails.

    ``progress`` is called with (slices done, slices in all) after each slice.
    """
    slices = split_window(whole_utc_hour(start, "start"), whole_utc_hour(end, "end"), slice_hours)
    dataset = checked_dataset(settings.ae_dataset)
    if not settings.ae_sql_url or not settings.ae_api_token:
        raise ConfigError("AE_SQL_URL and AE_API_TOKEN must be set: run `clicks up` or export them")
    summary = LoadSummary(start=slices[0].start, end=slices[-1].end)
    began = time.monotonic()
    with (
        connect(settings, autocommit=True) as log_conn,
        connect(settings, autocommit=True) as data_conn,
        AEClient(settings, read_timeout=read_timeout) as client,
    ):
        log_conn.execute(
            "select set_config('application_name', %s, false)",
            (f"clicks load {socket.gethostname()} pid {os.getpid()}",),
        )
        ensure_schemas(log_conn, ("raw",))
        acquire_lock(log_conn, dataset, lock_timeout)
        mark_abandoned(log_conn, dataset)
        run = Run(
            settings,
            dataset,
            client,
            data_conn,
            log_conn,
            policy or RetryPolicy(),
            min_split,
            build_kinds(),
        )
        for done, piece in enumerate(slices, start=1):
            add_slice(summary, piece, run, time.monotonic())
            if progress is not None:
                progress(done, len(slices))
    summary.seconds = time.monotonic() - began
    log.info(
        "loaded %s: %d slices, %d click rows, %d clicks, %d invalidation rows, %.2f s, %d retries",
        Slice(summary.start, summary.end),
        summary.slices,
        summary.click_rows,
        summary.clicks,
        summary.invalidation_rows,
        summary.seconds,
        summary.retries,
    )
    return summary


def add_slice(summary: LoadSummary, piece: Slice, run: Run, began: float) -> None:
    attempts, landed = land_slice(run, piece)
    clicks, invalidations = landed["clicks"], landed["invalidations"]
    summary.slices += 1
    summary.click_rows += clicks.rows
    summary.clicks += clicks.total
    summary.invalidation_rows += invalidations.rows
    summary.invalidated_clicks += invalidations.total
    summary.retries += attempts.retries
    summary.load_ids.append(attempts.load_id)
    log.info(
        "slice %s: %d click rows (%d clicks), %d invalidation rows, %.2f s, %d retries",
        piece,
        clicks.rows,
        clicks.total,
        invalidations.rows,
        time.monotonic() - began,
        attempts.retries,
    )


# --- Command line --------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    del name
    parser.add_argument("--start", required=True, help="first hour, e.g. 2026-11-01T00:00:00Z")
    parser.add_argument("--end", required=True, help="end of the window (exclusive), whole hour")
    parser.add_argument("--slice-hours", type=int, default=1, help="hours per load (default 1)")
    parser.add_argument(
        "--lock-timeout",
        type=float,
        default=30.0,
        help="seconds to wait for another loader of the dataset (default 30)",
    )


def run(args: argparse.Namespace) -> int:
    settings = Settings.load(require=("database_url", "ae_sql_url", "ae_api_token"))
    load_window(
        settings,
        args.start,
        args.end,
        slice_hours=args.slice_hours,
        lock_timeout=args.lock_timeout,
        progress=terminal_progress("load"),
    )
    return 0
