"""How much the loader costs over moving the same rows into Postgres with nothing else.

For each size N it writes N click points to the local AE emulator, one per (hour, dimensions)
group, so that one slice's clicks answer has exactly N rows, then times on that same slice:

- ``fetch``: the HTTP answer read and thrown away (AE's query, its JSON rendering, the transfer);
- ``parse``: the same answer decoded row by row by the loader's stream decoder, nothing kept;
- ``validate``: the loader's ``check_row`` over rows already in memory (CPU only, no I/O);
- ``copy`` (baseline A): psycopg COPY of rows parsed before the clock starts;
- ``naive`` (baseline B): the answer streamed and COPYed as it arrives, with no checks;
- ``loader``: the real ``load_window`` on the slice, in a spawned process of its own, which also
  reports its peak RSS growth;
- ``empty``: ``load_window`` on an hour with no points, the loader's cost per slice at zero rows.

Each round runs every stage once, and the median of ``--repeat`` rounds is reported, so load
from elsewhere on the machine falls on all stages alike. A and B write into
``bench.ae_clicks_hourly``, a logged table created ``like raw.ae_clicks_hourly including all``
(same defaults, checks and index); the loader writes into the landing table itself. Every target
is emptied before each run, off the clock, so every run is a first landing of the slice.

It empties the AE emulator of the stack under ``$CLICKS_HOME`` (which must be set) before and
after, and lands into a database of its own, created on that stack's server and dropped at the end.

    python -m benchmarks.bench_landing [--rows N ...] [--repeat K] [--json PATH]
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from loaders import stack
from loaders.ae_client import AEClient
from loaders.contract import load_contract
from loaders.db import connect, ensure_schemas
from loaders.emulators import ae_admin
from loaders.errors import ClicksError, ConfigError, TerminalError
from loaders.landing import Kind, Slice, build_kinds, check_row, clicks_sql, load_window
from loaders.settings import Secret, Settings, clicks_home

log = logging.getLogger(__name__)

SLICE = Slice(datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 1, 1, tzinfo=UTC))
# An hour with no points: the loader's warm-up run lands it, so lazy imports and first-use
# caches are paid before the memory mark is reset.
EMPTY_SLICE = Slice(SLICE.start - timedelta(hours=1), SLICE.start)
DEFAULT_ROWS = (10_000, 50_000, 200_000)
DEFAULT_REPEAT = 5
BENCH_LOAD_ID = uuid.UUID(int=0)
COPY_SCHEMA = "bench"
STAGES = ("fetch", "parse", "validate", "copy", "naive", "loader", "empty")


# --- The data ------------------------------------------------------------------------------------


def make_points(rows: int, start: datetime) -> list[dict[str, Any]]:
    """``rows`` click points inside one hour, each its own group (rental_id is unique)."""
    contract = load_contract()
    buckets = contract.blob("bot_bucket").values
    devices = contract.blob("device_class").values
    countries = ("DE", "US", "FR", "GB", "NL", "SE", "PL", "ES")
    points = []
    for i in range(rows):
        values = {
            "host": "go.example",
            "path": f"/r/{i % 997}",
            "route_id": f"route_{i % 50}",
            "renter_id": f"renter_{i // 20}",
            "country": countries[i % len(countries)],
            "asn": str(3320 + i % 40),
            "bot_bucket": buckets[i % len(buckets)],
            "referrer_domain": f"ref{i % 30}.example",
            "rental_id": f"rental_{i:07d}",
            "owner_id": f"owner_{i // 200}",
            "user_agent_hash": f"ua{i % 64}",
            "device_class": devices[i % len(devices)],
            # Every tenth point comes from an older Worker that leaves the kind empty.
            "event_kind": "click" if i % 10 else "",
            "original_click_at": "",
            "invalidation_reason": "",
        }
        points.append(
            {
                "blobs": [values[spec.name] for spec in contract.blobs],
                "doubles": [1.0, 1.0 if i % 17 == 0 else 0.0],
                "indexes": [values["rental_id"]],
                "timestamp": (start + timedelta(seconds=i % 3600)).isoformat(),
                "sample_interval": 1 + i % 4,
            }
        )
    return points


def write_dataset(ae_base: str, dataset: str, rows: int) -> None:
    began = time.perf_counter()
    written = ae_admin.write_points(ae_base, dataset, make_points(rows, SLICE.start))
    log.info("wrote %d points to %s in %.1f s", written, dataset, time.perf_counter() - began)


# --- The database --------------------------------------------------------------------------------


@contextmanager
def fresh_database(settings: Settings) -> Iterator[Settings]:
    """A new database on the stack's server with the project's schemas, dropped afterwards."""
    name = "bench_" + uuid.uuid4().hex[:12]
    server = settings.database_url.rsplit("/", 1)[0]
    admin = server + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    fresh = replace(settings, database_url=Secret(f"{server}/{name}"))
    try:
        with connect(fresh) as conn:
            ensure_schemas(conn)
            create_copy_table(conn)
        yield fresh
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
            )


def create_copy_table(conn: psycopg.Connection) -> None:
    # Logged like the landing table, with its defaults, checks and index, so A and B pay the same
    # per-row costs in Postgres as the loader does.
    conn.execute(sql.SQL("create schema {}").format(sql.Identifier(COPY_SCHEMA)))
    conn.execute(
        sql.SQL("create table {} (like {} including all)").format(
            sql.Identifier(COPY_SCHEMA, "ae_clicks_hourly"),
            sql.Identifier("raw", "ae_clicks_hourly"),
        )
    )
    conn.commit()


def truncate(settings: Settings, *tables: tuple[str, str]) -> None:
    with connect(settings, autocommit=True) as conn:
        conn.execute(
            sql.SQL("truncate {}").format(sql.SQL(", ").join(sql.Identifier(*t) for t in tables))
        )


def copy_statement(kind: Kind) -> sql.Composed:
    columns = ("load_id", "slice_start", "slice_end", *kind.columns)
    return sql.SQL("copy {table} ({columns}) from stdin").format(
        table=sql.Identifier(COPY_SCHEMA, kind.table),
        columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
    )


# --- The stages ----------------------------------------------------------------------------------


def fetch_body(client: AEClient, text: str) -> bytes:
    with client.query(text) as result:
        return result.response.read()


def fetch_only(client: AEClient, text: str) -> int:
    """Bytes of the answer, read as they arrive and dropped."""
    size = 0
    with client.query(text) as result:
        for chunk in result.response.iter_bytes():
            size += len(chunk)
    return size


def parse_only(client: AEClient, text: str) -> int:
    with client.query(text) as result:
        return sum(1 for _ in result.rows())


def validate_only(kind: Kind, data: Sequence[dict[str, Any]]) -> int:
    for number, row in enumerate(data, start=1):
        check_row(kind, row, SLICE, number)
    return len(data)


def parsed_rows(kind: Kind, data: Sequence[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Rows as a loader without checks would write them: AE's values, in the table's order."""
    head = (BENCH_LOAD_ID, SLICE.start, SLICE.end)
    return [(*head, *(row[column] for column in kind.columns)) for row in data]


def copy_rows(conn: psycopg.Connection, kind: Kind, rows: Sequence[tuple[Any, ...]]) -> int:
    """Baseline A: COPY of rows already in memory, in one transaction."""
    with conn.transaction(), conn.cursor() as cur, cur.copy(copy_statement(kind)) as copy:
        for row in rows:
            copy.write_row(row)
    return len(rows)


def naive_load(conn: psycopg.Connection, kind: Kind, client: AEClient, text: str) -> int:
    """Baseline B: stream the answer and COPY each row as it arrives, checking nothing."""
    head, count = (BENCH_LOAD_ID, SLICE.start, SLICE.end), 0
    with (
        client.query(text) as result,
        conn.transaction(),
        conn.cursor() as cur,
        cur.copy(copy_statement(kind)) as copy,
    ):
        for row in result.rows():
            copy.write_row((*head, *(row[column] for column in kind.columns)))
            count += 1
    return count


# --- The loader, in a process of its own ---------------------------------------------------------


def _status_kib(name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise TerminalError(f"/proc/self/status has no {name}: the memory figures need Linux")


def _reset_peak_rss() -> None:
    # Writing 5 to clear_refs resets the kernel's peak-RSS mark (VmHWM) to the current RSS.
    Path("/proc/self/clear_refs").write_text("5")


def loader_once(settings: Settings, start: datetime, end: datetime) -> dict[str, float]:
    """One ``load_window``, timed and measured inside the process that runs it."""
    before = _status_kib("VmRSS")
    _reset_peak_rss()
    began = time.perf_counter()
    summary = load_window(settings, start, end, lock_timeout=0)
    seconds = time.perf_counter() - began
    peak = _status_kib("VmHWM")
    return {
        "seconds": seconds,
        "rows": summary.click_rows,
        "growth_kib": peak - before,
        "peak_kib": peak,
    }


@contextmanager
def loader_process(settings: Settings) -> Iterator[ProcessPoolExecutor]:
    """A spawned process that runs only the loader, warmed up on an empty hour.

    Memory that the benchmark's own stages freed but the allocator kept would otherwise absorb,
    and so hide, any growth of the loader's.
    """
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        pool.submit(loader_once, settings, EMPTY_SLICE.start, EMPTY_SLICE.end).result()
        yield pool


# --- One size ------------------------------------------------------------------------------------


@dataclass
class SizeResult:
    rows: int
    body_bytes: int
    seconds: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})
    growth_kib: list[float] = field(default_factory=list)
    peak_kib: list[float] = field(default_factory=list)

    def median(self, stage: str) -> float:
        return statistics.median(self.seconds[stage])

    def ratio(self, stage: str, baseline: str) -> float:
        return self.median(stage) / self.median(baseline)


@dataclass(frozen=True)
class Stage:
    name: str
    work: Callable[[], int]
    expect: int
    before: Callable[[], None] | None = None

    def timed(self) -> float:
        """Seconds of one run; ``before`` runs outside the clock."""
        if self.before is not None:
            self.before()
        began = time.perf_counter()
        got = self.work()
        seconds = time.perf_counter() - began
        if got != self.expect:
            raise TerminalError(f"stage {self.name} gave {got}, not {self.expect}: the run is void")
        return seconds


def in_process_stages(
    settings: Settings, client: AEClient, conn: psycopg.Connection, body: bytes
) -> list[Stage]:
    """Every stage but the loader, over one slice; the answer is parsed here, off the clock."""
    kind, text = build_kinds()[0], clicks_sql(settings.ae_dataset, SLICE.start, SLICE.end)
    data = json.loads(body)["data"]
    prepared = parsed_rows(kind, data)
    rows = len(data)

    def clear_copy_table() -> None:
        truncate(settings, (COPY_SCHEMA, kind.table))

    return [
        Stage("fetch", lambda: fetch_only(client, text), len(body)),
        Stage("parse", lambda: parse_only(client, text), rows),
        Stage("validate", lambda: validate_only(kind, data), rows),
        Stage("copy", lambda: copy_rows(conn, kind, prepared), rows, clear_copy_table),
        Stage("naive", lambda: naive_load(conn, kind, client, text), rows, clear_copy_table),
    ]


def measure_size(settings: Settings, ae_base: str, rows: int, repeat: int) -> SizeResult:
    """Every stage once per round, ``repeat`` rounds, so load from elsewhere hits all alike."""
    dataset = f"bench_{rows}"
    write_dataset(ae_base, dataset, rows)
    settings = replace(settings, ae_dataset=dataset)
    with (
        AEClient(settings) as client,
        connect(settings) as conn,
        loader_process(settings) as pool,
    ):
        body = fetch_body(client, clicks_sql(dataset, SLICE.start, SLICE.end))
        result = SizeResult(rows=rows, body_bytes=len(body))
        stages = in_process_stages(settings, client, conn, body)
        del body
        # The parsed answer stays alive through the round; keep the collector from walking it.
        gc.freeze()
        try:
            for _ in range(repeat):
                for stage in stages:
                    result.seconds[stage.name].append(stage.timed())
                add_loader_runs(result, settings, pool)
        finally:
            gc.unfreeze()
    log.info(
        "%d rows: loader %.2f s, naive %.2f s, copy %.2f s",
        rows,
        result.median("loader"),
        result.median("naive"),
        result.median("copy"),
    )
    return result


def add_loader_runs(result: SizeResult, settings: Settings, pool: ProcessPoolExecutor) -> None:
    """The loader on the slice, then on an empty hour: its cost per slice whatever the rows."""
    truncate(settings, ("raw", "ae_clicks_hourly"), ("raw", "ae_invalidations_hourly"))
    run = pool.submit(loader_once, settings, SLICE.start, SLICE.end).result()
    if run["rows"] != result.rows:
        raise TerminalError(f"the loader landed {run['rows']} rows, not {result.rows}: void run")
    result.seconds["loader"].append(run["seconds"])
    result.growth_kib.append(run["growth_kib"])
    result.peak_kib.append(run["peak_kib"])
    empty = pool.submit(loader_once, settings, EMPTY_SLICE.start, EMPTY_SLICE.end).result()
    result.seconds["empty"].append(empty["seconds"])


# --- Reporting -----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "psycopg": psycopg.__version__,
    }


def markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table, right-aligned: it reads in a terminal and pastes into the README."""
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    lines = [header, ["-" * (width - 1) + ":" for width in widths], *rows]
    return "\n".join(
        "| "
        + " | ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True))
        + " |"
        for line in lines
    )


def summary_table(results: Sequence[SizeResult]) -> str:
    header = (
        "rows",
        "body MB",
        "A copy s",
        "B naive s",
        "loader s",
        "A rows/s",
        "B rows/s",
        "loader rows/s",
        "loader/A",
        "loader/B",
        "RSS growth MiB",
        "RSS peak MiB",
    )
    lines = []
    for r in results:
        copy, naive, loader = r.median("copy"), r.median("naive"), r.median("loader")
        lines.append(
            (
                f"{r.rows:,}",
                f"{r.body_bytes / 1e6:.1f}",
                f"{copy:.3f}",
                f"{naive:.3f}",
                f"{loader:.3f}",
                f"{r.rows / copy:,.0f}",
                f"{r.rows / naive:,.0f}",
                f"{r.rows / loader:,.0f}",
                f"{r.ratio('loader', 'copy'):.2f}",
                f"{r.ratio('loader', 'naive'):.2f}",
                f"{max(r.growth_kib) / 1024:.1f}",
                f"{max(r.peak_kib) / 1024:.1f}",
            )
        )
    return markdown(header, lines)


def stage_table(results: Sequence[SizeResult]) -> str:
    lines = [(f"{r.rows:,}", *(f"{r.median(stage):.3f}" for stage in STAGES)) for r in results]
    return markdown(("rows", *(f"{stage} s" for stage in STAGES)), lines)


def as_json(results: Sequence[SizeResult], repeat: int) -> dict[str, Any]:
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "repeat": repeat,
        "memory": "peak RSS growth: kernel VmHWM after the run minus VmRSS before it, "
        "the mark reset through /proc/self/clear_refs, in the loader's own process",
        "copy_table": f"{COPY_SCHEMA}.ae_clicks_hourly, logged, like raw.ae_clicks_hourly "
        "including all",
        "results": [
            {
                "rows": r.rows,
                "body_bytes": r.body_bytes,
                "seconds": r.seconds,
                "median_seconds": {stage: r.median(stage) for stage in STAGES},
                "loader_over_copy": r.ratio("loader", "copy"),
                "loader_over_naive": r.ratio("loader", "naive"),
                "loader_rss_growth_kib": r.growth_kib,
                "loader_rss_peak_kib": r.peak_kib,
            }
            for r in results
        ],
    }


# --- Command line --------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    del name
    parser.add_argument(
        "--rows",
        type=int,
        nargs="+",
        default=list(DEFAULT_ROWS),
        help="result rows of the slice, one size per value (10000 50000 200000)",
    )
    parser.add_argument(
        "--repeat", type=int, default=DEFAULT_REPEAT, help="rounds; each runs every stage once (5)"
    )
    parser.add_argument("--json", type=Path, help="also write the results to this file")


def run(args: argparse.Namespace) -> int:
    if args.repeat < 1 or any(rows < 1 for rows in args.rows):
        raise TerminalError("--rows and --repeat must be at least 1")
    if not os.environ.get("CLICKS_HOME"):
        raise ConfigError(
            "set CLICKS_HOME to a local stack whose AE emulator the benchmark may empty "
            "(`make bench` uses .local/test); the default home is the demo's"
        )
    state = stack.up(clicks_home())
    # The stack's own values, never a DATABASE_URL or AE_SQL_URL left in the environment.
    os.environ.update({name: state[name] for name in stack.ENV_NAMES})
    settings = Settings.load(require=("database_url", "ae_sql_url", "ae_api_token"))
    ae_base = state["_ae_base"]
    ae_admin.reset(ae_base)
    try:
        with fresh_database(settings) as fresh:
            results = [measure_size(fresh, ae_base, rows, args.repeat) for rows in args.rows]
    finally:
        ae_admin.reset(ae_base)
    print(f"Medians of {args.repeat} rounds; RSS of the loader's process (max over rounds).")
    print(summary_table(results))
    print()
    print(stage_table(results))
    if args.json is not None:
        args.json.write_text(json.dumps(as_json(results, args.repeat), indent=2) + "\n")
        log.info("results written to %s", args.json)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_landing", description=__doc__.splitlines()[0]
    )
    add_arguments(parser, "bench_landing")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    log.setLevel(logging.INFO)
    try:
        return run(args)
    except ClicksError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
