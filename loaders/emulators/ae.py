"""A local stand-in for the Workers Analytics Engine SQL API, running queries on chdb.

Started by loaders/stack.py as ``python -m loaders.emulators.ae --home DIR --port P --account-id
ID`` with the bearer token in ``CLICKS_EMULATOR_CREDENTIAL``. It answers AE's SQL endpoint with
AE's grammar limits, statuses and plain-text error bodies, plus emulator-only endpoints to write
points, queue faults and reset state (see docs/ae_emulator.md).
"""

from __future__ import annotations

import argparse
import hmac
import itertools
import json
import logging
import os
import re
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger(__name__)

DATABASE = "ae"
MAX_BLOBS = 20
MAX_DOUBLES = 20
MAX_INDEX_BYTES = 96
MAX_BLOB_BYTES = 16 * 1024
MAX_UINT32 = 2**32 - 1
FORMATS = {
    "JSON": "application/json; charset=UTF-8",
    "JSONEachRow": "application/x-ndjson; charset=UTF-8",
    "TabSeparated": "text/tab-separated-values; charset=UTF-8",
}
PLAIN = "text/plain; charset=UTF-8"
SQL_PATH = re.compile(r"^/client/v4/accounts/([^/]+)/analytics_engine/sql/?$")
POINTS_PATH = re.compile(r"^/emulator/datasets/([^/]+)/points/?$")
DATASET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
FAULT_BODIES = {
    429: "Resource limit: Too many queries queued for this account",
    500: "Sorry, we were unable to evaluate your query. Please try again in a few moments.",
    503: "Service unavailable: timed out waiting in the query queue. Please retry later.",
    504: "Query timed out: the query ran past the execution time limit. "
    "Simplify it or narrow the time range.",
}
# Table functions and the scalar file(): each reads outside the dataset, so none may be called.
FORBIDDEN_CALLS = frozenset(
    name.lower()
    for name in (
        "file", "url", "urlCluster", "remote", "remoteSecure", "cluster", "clusterAllReplicas",
        "numbers", "numbers_mt", "zeros", "zeros_mt", "generate_series", "generateRandom",
        "s3", "s3Cluster", "gcs", "hdfs", "azureBlobStorage", "mysql", "postgresql", "sqlite",
        "mongodb", "redis", "jdbc", "odbc", "executable", "input", "merge", "values", "view",
        "viewIfPermitted", "loop", "fuzzJSON", "dictionary", "iceberg", "deltaLake", "hudi",
        "python",
    )
)  # fmt: skip
FORBIDDEN_WORDS = {
    "JOIN": "JOIN is not supported: a query reads a single dataset",
    "UNION": "UNION is not supported: a query reads a single dataset",
    "INTERSECT": "INTERSECT is not supported: a query reads a single dataset",
    "EXCEPT": "EXCEPT is not supported",
    "SETTINGS": "SETTINGS clauses are not supported",
    "INTO": "INTO is not supported: queries are read-only",
}
SYSTEM_DATABASES = frozenset({"system", "information_schema"})


class ApiError(Exception):
    """An answer with a status and a plain-text body, as AE gives for every failure."""

    def __init__(self, status: int, body: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(body)
        self.status = status
        self.body = body
        self.headers = headers or {}


def invalid(reason: str) -> ApiError:
    return ApiError(422, f"Input was invalid: {reason}")


# -- SQL checking -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    kind: str  # word, qident, string, number, punct
    text: str
    start: int
    end: int

    @property
    def upper(self) -> str:
        return self.text.upper() if self.kind == "word" else ""

    @property
    def name(self) -> str:
        """The identifier this token spells, unquoted."""
        if self.kind == "qident":
            quote = self.text[0]
            return self.text[1:-1].replace(quote * 2, quote)
        return self.text


# Comments are deliberately not nested: if ClickHouse nests them, text we treat as code is a
# comment to it, so a keyword check can only reject too much, never let a keyword through.
_TOKEN = re.compile(
    r"""(?P<space>\s+|--[^\n]*|/\*.*?\*/)
    |(?P<string>'(?:[^'\\]|\\.|'')*')
    |(?P<qident>"(?:[^"\\]|\\.|"")*"|`(?:[^`\\]|\\.|``)*`)
    |(?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
    |(?P<word>[A-Za-z_][A-Za-z0-9_$]*)
    |(?P<punct>.)""",
    re.VERBOSE | re.DOTALL,
)


def tokenize(sql: str) -> list[Token]:
    """Split SQL into tokens, dropping whitespace and comments; string literals stay whole."""
    tokens = []
    for match in _TOKEN.finditer(sql):
        kind = match.lastgroup or "punct"
        if kind != "space":
            tokens.append(Token(kind, match.group(), match.start(), match.end()))
    return tokens


@dataclass(frozen=True)
class Plan:
    """A checked query: the SQL to give the engine and the output format AE was asked for."""

    sql: str
    fmt: str


def plan_query(sql: str, datasets: set[str]) -> Plan:
    """Check one statement against AE's grammar limits; raise a 422 ApiError naming the problem."""
    tokens = _strip_semicolon(tokenize(sql))
    if not tokens:
        raise invalid("the query is empty")
    fmt, tokens = _split_format(tokens)
    first = tokens[0].upper
    if first == "SHOW":
        return Plan(_show_sql(tokens), fmt)
    if first != "SELECT":
        shown = tokens[0].text[:40]
        raise invalid(f"only SELECT and SHOW statements are supported, not {shown!r}")
    _check_words(tokens)
    _check_calls(tokens)
    _check_from_clauses(tokens, datasets)
    return Plan(sql[tokens[0].start : tokens[-1].end], fmt)


def _strip_semicolon(tokens: list[Token]) -> list[Token]:
    while tokens and tokens[-1].text == ";":
        tokens = tokens[:-1]
    if any(token.text == ";" for token in tokens):
        raise invalid("only one statement per request is supported")
    return tokens


def _split_format(tokens: list[Token]) -> tuple[str, list[Token]]:
    positions = [i for i, token in enumerate(tokens) if token.upper == "FORMAT"]
    if not positions:
        return "JSON", tokens
    at = positions[-1]
    if len(positions) > 1 or at != len(tokens) - 2:
        raise invalid("FORMAT must be the last clause and name one format")
    fmt = tokens[at + 1].name
    if fmt not in FORMATS:
        raise invalid(f"format {fmt!r} is not supported; use JSON, JSONEachRow or TabSeparated")
    return fmt, tokens[:at]


def _show_sql(tokens: list[Token]) -> str:
    words = " ".join(token.upper for token in tokens)
    if words == "SHOW TABLES":
        return "SHOW TABLES"
    if words == "SHOW TIMEZONE":
        return "SELECT timezone() AS timezone"
    if words == "SHOW TIMEZONES":
        return "SELECT time_zone AS timezone FROM system.time_zones ORDER BY time_zone"
    raise invalid("only SHOW TABLES, SHOW TIMEZONE and SHOW TIMEZONES are supported")


def _check_words(tokens: list[Token]) -> None:
    for i, token in enumerate(tokens):
        reason = FORBIDDEN_WORDS.get(token.upper)
        if reason:
            raise invalid(reason)
        if token.upper == "WITH" and i > 0 and tokens[i - 1].text == "(":
            raise invalid("WITH (common table expressions) is not supported")
        dotted = i + 1 < len(tokens) and tokens[i + 1].text == "."
        if dotted and token.kind in ("word", "qident") and token.name.lower() in SYSTEM_DATABASES:
            raise invalid(f"system tables are not available: {token.name}.*")


def _check_calls(tokens: list[Token]) -> None:
    for token, after in itertools.pairwise(tokens):
        if after.text == "(" and token.kind == "word" and token.text.lower() in FORBIDDEN_CALLS:
            raise invalid(f"table function {token.text}() is not supported")


def _check_from_clauses(tokens: list[Token], datasets: set[str]) -> None:
    """Every FROM that opens a table reference must name a known dataset or a subquery.

    A FROM inside a function's parentheses (extract(DAY FROM t), trim(BOTH ' ' FROM s)) is an
    argument keyword, not a table reference, so parentheses are tracked as calls or subqueries.
    """
    stack: list[str] = []
    for i, token in enumerate(tokens):
        if token.text == "(":
            nxt = tokens[i + 1].upper if i + 1 < len(tokens) else ""
            stack.append("query" if nxt in ("SELECT", "WITH") else "call")
        elif token.text == ")" and stack:
            stack.pop()
        elif token.upper == "FROM" and (not stack or stack[-1] == "query"):
            _check_table_reference(tokens, i + 1, datasets)


def _check_table_reference(tokens: list[Token], at: int, datasets: set[str]) -> None:
    if at >= len(tokens):
        raise invalid("FROM must name a dataset")
    target = tokens[at]
    if target.text == "(":
        if at + 1 >= len(tokens) or tokens[at + 1].upper != "SELECT":
            raise invalid("a subquery in FROM must be a SELECT")
        _check_single_table(tokens, _matching_paren(tokens, at) + 1)
        return
    if target.kind not in ("word", "qident"):
        raise invalid(f"FROM must name a dataset, not {target.text!r}")
    following = tokens[at + 1].text if at + 1 < len(tokens) else ""
    if following == "(":
        raise invalid(f"table function {target.text}() is not supported")
    if following == ".":
        raise invalid(f"other databases are not available: {target.name}.*")
    if target.name not in datasets:
        raise invalid(f"unknown dataset {target.name!r}")
    _check_single_table(tokens, at + 1)


def _matching_paren(tokens: list[Token], at: int) -> int:
    depth = 0
    for i in range(at, len(tokens)):
        depth += {"(": 1, ")": -1}.get(tokens[i].text, 0)
        if depth == 0:
            return i
    raise invalid("unbalanced parentheses")


def _check_single_table(tokens: list[Token], at: int) -> None:
    """Reject `FROM a, b` (an implicit join): after the table and its alias comes no comma."""
    if at < len(tokens) and tokens[at].upper == "AS":
        at += 1
    if at < len(tokens) and tokens[at].kind in ("word", "qident") and not _is_clause(tokens[at]):
        at += 1
    if at < len(tokens) and tokens[at].text == ",":
        raise invalid("a query reads a single dataset; several tables in FROM are not supported")


def _is_clause(token: Token) -> bool:
    return token.upper in {
        "WHERE", "GROUP", "HAVING", "ORDER", "LIMIT", "OFFSET", "FINAL", "SAMPLE", "PREWHERE",
        "ARRAY", "LEFT", "INNER", "CROSS", "FULL", "RIGHT", "GLOBAL", "ANY", "ALL", "ASOF",
    }  # fmt: skip


# -- Points -------------------------------------------------------------------------------------


class PointError(ApiError):
    def __init__(self, position: int, rule: str) -> None:
        super().__init__(400, f"point {position}: {rule}; nothing was written")


_POINTS_ENVELOPE = re.compile(rb'^\s*\{\s*"points"\s*:\s*(?=\[)')


def points_array(body: bytes) -> bytes | None:
    """The JSON array of a body shaped {"points": [...]}, or None for any other shape."""
    head = _POINTS_ENVELOPE.match(body[:64])
    tail = body.rstrip()
    if not head or not tail.endswith(b"}"):
        return None
    array = tail[head.end() : -1].rstrip()
    return array if array.endswith(b"]") else None


def parse_points(body: bytes) -> list[list[Any]]:
    """Validate every point against AE's write limits; return rows ready for the engine."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the body is not JSON: {exc}") from None
    points = payload.get("points") if isinstance(payload, dict) else None
    if not isinstance(points, list):
        raise ApiError(400, 'the body must be an object {"points": [...]}')
    now = int(time.time())
    stamps: dict[str, int] = {}
    return [_point_row(point, position, now, stamps) for position, point in enumerate(points)]


def _point_row(point: Any, position: int, now: int, stamps: dict[str, int]) -> list[Any]:
    if not isinstance(point, dict):
        raise PointError(position, "a point must be an object")
    blobs = _blobs(point.get("blobs", []), position)
    doubles = _doubles(point.get("doubles", []), position)
    index = _index(point.get("indexes"), position)
    stamp = point.get("timestamp")
    epoch = now if stamp is None else _epoch(stamp, position, stamps)
    interval = _sample_interval(point.get("sample_interval", 1), position)
    return [epoch, interval, index, blobs, doubles]


def _blobs(blobs: Any, position: int) -> list[str]:
    if not isinstance(blobs, list):
        raise PointError(position, "blobs must be a list")
    if len(blobs) > MAX_BLOBS:
        raise PointError(position, f"{len(blobs)} blobs; at most {MAX_BLOBS} are allowed")
    blobs = ["" if blob is None else blob for blob in blobs]
    if not all(isinstance(blob, str) for blob in blobs):
        raise PointError(position, "every blob must be a string or null")
    chars = sum(map(len, blobs))
    # A UTF-8 character is at most 4 bytes, so most points need no encoding to pass the check.
    if chars * 4 > MAX_BLOB_BYTES:
        size = sum(len(blob.encode()) for blob in blobs)
        if size > MAX_BLOB_BYTES:
            raise PointError(position, f"blobs total {size} bytes; at most {MAX_BLOB_BYTES}")
    return blobs


def _doubles(doubles: Any, position: int) -> list[float]:
    if not isinstance(doubles, list):
        raise PointError(position, "doubles must be a list")
    if len(doubles) > MAX_DOUBLES:
        raise PointError(position, f"{len(doubles)} doubles; at most {MAX_DOUBLES} are allowed")
    for value in doubles:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise PointError(position, f"double {value!r} is not a number")
    return doubles


def _index(indexes: Any, position: int) -> str:
    if not isinstance(indexes, list) or len(indexes) != 1:
        count = len(indexes) if isinstance(indexes, list) else 0
        raise PointError(position, f"{count} indexes; exactly one is required")
    index = indexes[0]
    if not isinstance(index, str):
        raise PointError(position, "the index must be a string")
    if len(index) * 4 > MAX_INDEX_BYTES and len(index.encode()) > MAX_INDEX_BYTES:
        size = len(index.encode())
        raise PointError(position, f"index is {size} bytes; at most {MAX_INDEX_BYTES}")
    return index


def _epoch(stamp: Any, position: int, stamps: dict[str, int]) -> int:
    if not isinstance(stamp, str):
        raise PointError(position, "timestamp must be an ISO 8601 string")
    if stamp in stamps:
        return stamps[stamp]
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        raise PointError(position, f"timestamp {stamp!r} is not ISO 8601") from None
    if moment.tzinfo is None:
        raise PointError(position, f"timestamp {stamp!r} needs Z or an offset")
    epoch = int(moment.timestamp())
    if not 0 <= epoch <= MAX_UINT32:
        raise PointError(position, f"timestamp {stamp!r} is outside DateTime's range")
    stamps[stamp] = epoch
    return epoch


def _sample_interval(value: Any, position: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_UINT32:
        raise PointError(position, f"sample_interval {value!r} must be an integer >= 1")
    return value


# -- Engine -------------------------------------------------------------------------------------


def _table_ddl(dataset: str) -> str:
    blobs = ", ".join(f"blob{n} String" for n in range(1, MAX_BLOBS + 1))
    doubles = ", ".join(f"double{n} Float64" for n in range(1, MAX_DOUBLES + 1))
    return (
        f"CREATE TABLE IF NOT EXISTS {DATABASE}.`{dataset}` (dataset String, timestamp DateTime, "
        f"_sample_interval UInt32, index1 String, {blobs}, {doubles}) "
        "ENGINE = MergeTree ORDER BY (index1, timestamp)"
    )


def _insert_sql(dataset: str, path: Path) -> str:
    blobs = ", ".join(f"b[{n}]" for n in range(1, MAX_BLOBS + 1))
    doubles = ", ".join(f"d[{n}]" for n in range(1, MAX_DOUBLES + 1))
    structure = "t UInt32, si UInt32, i String, b Array(String), d Array(Float64)"
    source = _file_source(path, "JSONCompactEachRow", structure)
    # The dataset matched DATASET_NAME and the path is our own temp file: neither comes from SQL.
    return (
        f"INSERT INTO {DATABASE}.`{dataset}` SELECT '{dataset}', "  # noqa: S608
        f"toDateTime(t), si, i, {blobs}, {doubles} FROM {source}"
    )


_RAW_STRUCTURE = (
    "blobs Array(Nullable(String)), doubles Array(Nullable(Float64)), "
    "indexes Array(Nullable(String)), timestamp Nullable(String), sample_interval Nullable(Int64)"
)
_RAW_SETTINGS = (
    "input_format_skip_unknown_fields = 1, input_format_json_read_numbers_as_strings = 0, "
    "input_format_json_read_bools_as_numbers = 0, input_format_json_read_arrays_as_strings = 0, "
    "input_format_json_read_objects_as_strings = 0, session_timezone = 'Etc/UTC'"
)
_RAW_EPOCH = "intDiv(toUnixTimestamp64Milli(parseDateTime64BestEffort(timestamp, 3, 'UTC')), 1000)"
# The same limits as the Python checks, written once more in ClickHouse's dialect; the ISO
# pattern is narrower than Python's parser, so an unusual stamp falls back rather than differs.
_RAW_VALID = (
    f"length(blobs) <= {MAX_BLOBS} AND length(doubles) <= {MAX_DOUBLES} "
    "AND NOT arrayExists(x -> x IS NULL, doubles) "
    "AND length(indexes) = 1 AND indexes[1] IS NOT NULL "
    f"AND length(assumeNotNull(indexes[1])) <= {MAX_INDEX_BYTES} "
    f"AND arraySum(arrayMap(b -> length(ifNull(b, '')), blobs)) <= {MAX_BLOB_BYTES} "
    f"AND ifNull(sample_interval, 1) BETWEEN 1 AND {MAX_UINT32} "
    "AND (timestamp IS NULL OR (match(timestamp, "
    r"'^\\d{4}-\\d{2}-\\d{2}[T ]\\d{2}:\\d{2}:\\d{2}(\\.\\d+)?(Z|[+-]\\d{2}:\\d{2})$') "
    f"AND {_RAW_EPOCH} BETWEEN 0 AND {MAX_UINT32}))"
)


def _file_source(path: Path, fmt: str, structure: str) -> str:
    quoted = str(path).replace("\\", "\\\\").replace("'", "\\'")
    return f"file('{quoted}', '{fmt}', '{structure}')"


def _raw_check_sql(path: Path) -> str:
    source = _file_source(path, "JSONEachRow", _RAW_STRUCTURE)
    return (
        f"SELECT count(), countIf(NOT ({_RAW_VALID})) FROM {source} "  # noqa: S608
        f"SETTINGS {_RAW_SETTINGS}"
    )


def _raw_insert_sql(dataset: str, path: Path) -> str:
    blobs = ", ".join(f"ifNull(blobs[{n}], '')" for n in range(1, MAX_BLOBS + 1))
    doubles = ", ".join(f"ifNull(doubles[{n}], 0)" for n in range(1, MAX_DOUBLES + 1))
    stamp = f"toDateTime(if(timestamp IS NULL, toUnixTimestamp(now()), {_RAW_EPOCH}))"
    source = _file_source(path, "JSONEachRow", _RAW_STRUCTURE)
    return (
        f"INSERT INTO {DATABASE}.`{dataset}` SELECT '{dataset}', {stamp}, "  # noqa: S608
        f"ifNull(sample_interval, 1), assumeNotNull(indexes[1]), {blobs}, {doubles} "
        f"FROM {source} SETTINGS {_RAW_SETTINGS}"
    )


class Engine:
    """One chdb session under --home, used by one thread at a time."""

    def __init__(self, home: Path, timeout_s: float) -> None:
        from chdb import session

        self.home = home
        self.timeout_s = timeout_s
        self.lock = threading.Lock()
        self.session = session.Session(str(home / "chdb"))
        self._exec(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
        self._exec(f"USE {DATABASE}")
        self.datasets = set(self._exec("SHOW TABLES", "TabSeparated").decode().split())

    def _exec(self, sql: str, fmt: str = "TabSeparated") -> bytes:
        try:
            return self.session.query(sql, fmt).bytes()
        except RuntimeError:
            # chdb keeps a failed query's partial output and prepends it to the next result.
            self.session.query("SELECT 1", "TabSeparated")
            raise

    def query(self, plan: Plan, *, quote_int64: bool = False) -> bytes:
        settings = (
            f"max_execution_time = {self.timeout_s}, session_timezone = 'Etc/UTC', "
            f"output_format_write_statistics = 0, "
            f"output_format_json_quote_64bit_integers = {int(quote_int64)}"
        )
        with self.lock:
            try:
                return self._exec(f"{plan.sql}\nSETTINGS {settings}", plan.fmt)
            except RuntimeError as exc:
                raise engine_error(str(exc)) from None

    def write(self, dataset: str, rows: list[list[Any]]) -> int:
        handle, name = tempfile.mkstemp(suffix=".jsonl", dir=self.home)
        path = Path(name)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write("\n".join(map(json.dumps, rows)))
            with self.lock:
                self._exec(_table_ddl(dataset))
                self.datasets.add(dataset)
                if rows:
                    self._exec(_insert_sql(dataset, path))
        finally:
            path.unlink(missing_ok=True)
        return len(rows)

    def write_raw(self, dataset: str, array: bytes) -> int | None:
        """Validate and insert a JSON array of points inside ClickHouse, with no Python parse.

        Answers None when ClickHouse cannot parse the array or any point breaks a limit: the
        caller then validates in Python, which names the point and the rule.
        """
        handle, name = tempfile.mkstemp(suffix=".json", dir=self.home)
        path = Path(name)
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(array)
            with self.lock:
                try:
                    counts = self._exec(_raw_check_sql(path)).decode().split()
                except RuntimeError:
                    return None
                if counts[1] != "0":
                    return None
                self._exec(_table_ddl(dataset))
                self.datasets.add(dataset)
                self._exec(_raw_insert_sql(dataset, path))
        finally:
            path.unlink(missing_ok=True)
        return int(counts[0])

    def reset(self) -> None:
        # DROP ... SYNC never returns inside chdb; the Atomic database frees the name at once
        # and removes the parts in the background.
        with self.lock:
            for dataset in sorted(self.datasets):
                self._exec(f"DROP TABLE IF EXISTS {DATABASE}.`{dataset}`")
            self.datasets.clear()


# ClickHouse echoes the query, with the SETTINGS the engine appended, in some errors.
_OUR_SETTINGS = re.compile(r"\s*SETTINGS max_execution_time.*?quote_64bit_integers = [01]")
_ENGINE_CODE = re.compile(r"^Code: (\d+)\. (?:DB::Exception: )?(.*?)(?: \([A-Z_]+\))?$", re.S)


def engine_error(message: str) -> ApiError:
    """Map a ClickHouse error to AE's status: timeouts 504, resource limits 429, the rest 422."""
    match = _ENGINE_CODE.match(message.strip())
    code, text = (int(match.group(1)), match.group(2)) if match else (0, message)
    text = text.splitlines()[0] if text else "the query failed"
    text = _OUR_SETTINGS.sub("", text)
    if code == 159:
        return ApiError(504, FAULT_BODIES[504])
    if code in (241, 396):
        return ApiError(429, f"Resource limit: {text}")
    return invalid(text)


# -- Faults -------------------------------------------------------------------------------------


@dataclass
class Fault:
    """What to do to one SQL request; several keys may be combined in one fault."""

    status: int | None = None
    body: str | None = None
    retry_after: float | None = None
    delay_s: float = 0.0
    truncate_after_bytes: int | None = None
    quote_int64: bool = False
    drop_rows: int = 0
    rename_column: dict[str, str] = field(default_factory=dict)


def parse_faults(body: bytes) -> list[Fault]:
    try:
        items = json.loads(body)["faults"]
        faults = [Fault(**item) for item in items]
    except (ValueError, KeyError, TypeError) as exc:
        raise ApiError(400, f"faults must be a list of objects with known keys: {exc}") from None
    for fault in faults:
        if fault.status is not None and fault.status not in FAULT_BODIES and not fault.body:
            raise ApiError(400, f"fault status {fault.status} needs a body")
        if fault.rename_column and set(fault.rename_column) != {"from", "to"}:
            raise ApiError(400, 'rename_column takes {"from": ..., "to": ...}')
    return faults


def shape_body(body: bytes, fmt: str, fault: Fault) -> bytes:
    """Apply the response-shape faults (dropped rows, renamed column) to a real answer."""
    if not (fault.drop_rows or fault.rename_column):
        return body
    if fmt == "JSON":
        doc = json.loads(body)
        doc["data"] = _shaped_rows(doc["data"], fault)
        for column in doc["meta"]:
            if column["name"] == fault.rename_column.get("from"):
                column["name"] = fault.rename_column["to"]
        return json.dumps(doc, indent="\t").encode() + b"\n"
    lines = body.decode().splitlines()
    if fmt == "JSONEachRow":
        rows = _shaped_rows([json.loads(line) for line in lines], fault)
        return "".join(json.dumps(row) + "\n" for row in rows).encode()
    kept = lines[: max(len(lines) - fault.drop_rows, 0)]
    return "".join(line + "\n" for line in kept).encode()


def _shaped_rows(rows: list[dict[str, Any]], fault: Fault) -> list[dict[str, Any]]:
    rows = rows[: max(len(rows) - fault.drop_rows, 0)]
    old, new = fault.rename_column.get("from"), fault.rename_column.get("to")
    if old is None:
        return rows
    return [{(new if key == old else key): value for key, value in row.items()} for row in rows]


# -- HTTP ---------------------------------------------------------------------------------------


@dataclass
class State:
    engine: Engine
    account_id: str
    token: str
    faults: deque[Fault] = field(default_factory=deque)
    faults_lock: threading.Lock = field(default_factory=threading.Lock)

    def next_fault(self) -> Fault:
        with self.faults_lock:
            return self.faults.popleft() if self.faults else Fault()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: State  # set on the class by serve()

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default access log: _dispatch writes one line without the query string."""

    def _dispatch(self, method: str) -> None:
        started = time.monotonic()
        path = urlsplit(self.path).path
        self.status = 500
        try:
            self._route(method, path)
        except ApiError as exc:
            self._send(exc.status, exc.body.encode(), PLAIN, exc.headers)
        except Exception:
            log.exception("unexpected error on %s %s", method, path)
            self._send(500, FAULT_BODIES[500].encode(), PLAIN)
        elapsed = (time.monotonic() - started) * 1000
        log.info("%s %s %d %.1f ms", method, path, self.status, elapsed)

    def _route(self, method: str, path: str) -> None:
        sql_match = SQL_PATH.match(path)
        points_match = POINTS_PATH.match(path)
        if sql_match:
            self._sql(method, sql_match.group(1))
        elif path == "/emulator/health" and method == "GET":
            self._send_json(200, {"status": "ok"})
        elif points_match and method == "POST":
            self._points(points_match.group(1))
        elif path == "/emulator/faults" and method == "POST":
            self._faults()
        elif path == "/emulator/reset" and method == "POST":
            self._reset()
        else:
            raise ApiError(404, f"no such endpoint: {method} {path}")

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.status = status
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, status: int, doc: dict[str, Any]) -> None:
        self._send(status, json.dumps(doc).encode(), "application/json")

    # SQL endpoint

    def _sql(self, method: str, account_id: str) -> None:
        body = self._body()
        self._authorize(account_id)
        fault = self.state.next_fault()
        if fault.delay_s:
            time.sleep(fault.delay_s)
        if fault.status is not None:
            raise _status_fault(fault)
        plan = plan_query(self._sql_text(method, body), self.state.engine.datasets)
        started = time.monotonic()
        result = self.state.engine.query(plan, quote_int64=fault.quote_int64)
        log.info("query %s ran in %.1f ms", plan.fmt, (time.monotonic() - started) * 1000)
        result = shape_body(result, plan.fmt, fault)
        headers = {"X-Query-Id": str(uuid.uuid4())}
        if fault.truncate_after_bytes is None:
            self._send(200, result, FORMATS[plan.fmt], headers)
        else:
            self._send_truncated(result, FORMATS[plan.fmt], headers, fault.truncate_after_bytes)

    def _authorize(self, account_id: str) -> None:
        header = self.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        good_token = scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), self.state.token.encode()
        )
        if not good_token or account_id != self.state.account_id:
            raise ApiError(403, "Authorization error: the token is missing, invalid, or has no "
                           "access to this account")  # fmt: skip

    def _sql_text(self, method: str, body: bytes) -> str:
        content_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if method == "POST" and content_type and not _is_text_content(content_type):
            raise ApiError(400, f"Content type error: expected text/plain, got {content_type}")
        if not body.strip():
            query = parse_qs(urlsplit(self.path).query).get("query", [""])[0]
            if not query.strip():
                raise ApiError(400, "Query string error: missing field `query`")
            return query
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError(400, "Content type error: the body is not UTF-8 text") from None

    def _send_truncated(
        self, body: bytes, content_type: str, headers: dict[str, str], keep: int
    ) -> None:
        self.status = 200
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body[:keep])
        self.wfile.flush()
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    # Emulator-only endpoints

    def _points(self, dataset: str) -> None:
        if not DATASET_NAME.match(dataset):
            raise ApiError(400, f"dataset {dataset!r} is not a plain identifier")
        started = time.monotonic()
        body = self._body()
        array = points_array(body)
        written = None if array is None else self.state.engine.write_raw(dataset, array)
        if written is None:
            written = self.state.engine.write(dataset, parse_points(body))
        seconds = max(time.monotonic() - started, 1e-9)
        log.info("wrote %d points to %s (%.0f points/s)", written, dataset, written / seconds)
        self._send_json(200, {"written": written})

    def _faults(self) -> None:
        faults = parse_faults(self._body())
        with self.state.faults_lock:
            self.state.faults.extend(faults)
            queued = len(self.state.faults)
        self._send_json(200, {"queued": queued})

    def _reset(self) -> None:
        self._body()
        self.state.engine.reset()
        with self.state.faults_lock:
            self.state.faults.clear()
        self._send_json(200, {"reset": True})


def _is_text_content(content_type: str) -> bool:
    # curl --data sends form-urlencoded; AE's own examples post SQL that way.
    return content_type.startswith("text/") or content_type in (
        "application/x-www-form-urlencoded",
        "application/octet-stream",
        "application/sql",
    )


def _status_fault(fault: Fault) -> ApiError:
    status = fault.status or 500
    headers = {}
    if fault.retry_after is not None:
        headers["Retry-After"] = f"{fault.retry_after:g}"
    return ApiError(status, fault.body or FAULT_BODIES[status], headers)


# -- Entry point --------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", required=True, type=Path)
    parser.add_argument("--port", required=True, type=int)
    parser.add_argument("--account-id", required=True)
    parser.add_argument("--query-timeout-s", type=float, default=60.0)
    return parser.parse_args(argv)


def serve(args: argparse.Namespace) -> None:
    token = os.environ.get("CLICKS_EMULATOR_CREDENTIAL", "")
    if not token:
        raise SystemExit("CLICKS_EMULATOR_CREDENTIAL is not set: the emulator needs its token")
    args.home.mkdir(parents=True, exist_ok=True)
    engine = Engine(args.home, args.query_timeout_s)
    Handler.state = State(engine, args.account_id, token)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    log.info("AE emulator on 127.0.0.1:%d, datasets %s", args.port, sorted(engine.datasets))
    server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    # The engine's clock must not follow the host's zone: AE answers in UTC.
    os.environ["TZ"] = "UTC"
    time.tzset()
    logging.basicConfig(
        stream=sys.stdout, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )
    serve(parse_args(argv))


if __name__ == "__main__":
    main()
