"""Streaming client for the AE SQL API: one classifier for failures, one retry policy.

AE answers a ``FORMAT JSON`` query with ``{"meta": [...], "data": [...], "rows": N}``. The rows
are decoded one by one as the body arrives, so a caller can copy them onward with flat memory,
and ``rows`` is checked at the end: a body that was cut off or lost rows fails as transient
instead of landing short. Every failure goes through ``classify``, which decides transient
(retry with backoff) or terminal (stop and say what to fix), the way dlt splits its errors.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from loaders.errors import ClicksError, ResultTooLargeError, TerminalError, TransientError
from loaders.settings import Settings, redact

log = logging.getLogger(__name__)

T = TypeVar("T")

RETRYABLE_STATUSES = frozenset({429, 500, 503, 504})
TOO_LARGE_MARK = "result is too large"
# AE's error bodies are short plain text; anything longer is not worth echoing.
MAX_ERROR_BODY = 300
# One row of our aggregates is well under a kilobyte; this much undecodable text is garbage.
MAX_PENDING_CHARS = 1 << 20
_DATA_KEY = re.compile(r'"data"\s*:\s*\[')
_DECODER = json.JSONDecoder()


@dataclass(frozen=True)
class RetryPolicy:
    """Capped exponential backoff with full jitter; Retry-After is a floor, not a suggestion."""

    max_attempts: int = 6
    base_delay: float = 1.0
    max_delay: float = 60.0
    max_retry_after: float = 300.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        wait = random.uniform(0.0, ceiling)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_retry_after))
        return wait


def classify(
    failure: httpx.Response | BaseException, settings: Settings | None = None
) -> ClicksError:
    """Turn an AE error response or a transport exception into a transient or terminal error.

    A response must already be read (its body is AE's plain-text message). Messages never carry
    the request headers, and any known secret is removed from AE's text before it is quoted.
    """
    if isinstance(failure, ClicksError):
        return failure
    if isinstance(failure, httpx.Response):
        return _classify_status(failure, settings)
    if isinstance(failure, httpx.TimeoutException):
        return TransientError(f"AE did not answer in time ({type(failure).__name__})")
    if isinstance(failure, httpx.TransportError):
        # Connection refused or reset, and bodies cut off mid-stream (RemoteProtocolError,
        # ReadError) all land here; the request may simply be sent again.
        reason = redact(str(failure), settings) or "no detail"
        return TransientError(f"AE connection failed ({type(failure).__name__}: {reason})")
    if isinstance(failure, json.JSONDecodeError):
        return TransientError(f"AE sent a body that is not valid JSON at char {failure.pos}")
    return TerminalError(f"unexpected failure talking to AE: {type(failure).__name__}")


def _classify_status(response: httpx.Response, settings: Settings | None) -> ClicksError:
    status = response.status_code
    body = redact(response.text.strip()[:MAX_ERROR_BODY], settings) or "(empty body)"
    if status == 429 and TOO_LARGE_MARK in body.lower():
        return ResultTooLargeError(f"AE 429: {body}")
    if status in RETRYABLE_STATUSES:
        return TransientError(f"AE {status}: {body}", retry_after=_retry_after(response))
    if status == 403:
        return TerminalError(
            f"AE 403: {body}; check AE_API_TOKEN (it needs Account Analytics Read) "
            "and the account id in AE_SQL_URL"
        )
    if status == 422:
        return TerminalError(f"AE 422: {body}; the query or dataset name is wrong, see the log")
    return TerminalError(f"AE {status}: {body}")


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "").strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        # An HTTP-date form is legal but rare; the jittered backoff covers it.
        return None


def with_retries(
    attempt: Callable[[], T],
    policy: RetryPolicy,
    *,
    what: str,
    on_retry: Callable[[int, TransientError], None] | None = None,
) -> T:
    """Run ``attempt`` until it succeeds, retrying transient errors as the policy allows."""
    for number in range(1, policy.max_attempts + 1):
        try:
            return attempt()
        except TransientError as exc:
            if number == policy.max_attempts:
                raise TransientError(
                    f"{what}: gave up after {number} attempts; last error: {exc}; "
                    "run the same command again later"
                ) from None
            wait = policy.delay(number, exc.retry_after)
            log.warning("%s: %s; retry %d in %.2f s", what, exc, number, wait)
            if on_retry is not None:
                on_retry(number, exc)
            time.sleep(wait)
    raise AssertionError("unreachable: max_attempts must be at least 1")


@dataclass
class QueryResult:
    """An open AE response: ``rows()`` decodes its data array as the bytes arrive."""

    response: httpx.Response
    settings: Settings | None
    meta: list[dict[str, Any]] = field(default_factory=list)

    @property
    def query_id(self) -> str | None:
        return self.response.headers.get("x-query-id")

    def rows(self) -> Iterator[dict[str, Any]]:
        try:
            yield from self._decode(_TextStream(self.response.iter_text()))
        except (httpx.HTTPError, json.JSONDecodeError) as exc:
            raise classify(exc, self.settings) from None

    def _decode(self, text: _TextStream) -> Iterator[dict[str, Any]]:
        head = json.loads(text.read_through(_DATA_KEY).rstrip().rstrip(",") + "}")
        self.meta = list(head.get("meta", []))
        count = 0
        while not text.consume_if("]"):
            row = text.next_value()
            if not isinstance(row, dict):
                raise TransientError(f"AE row {count + 1} is not a JSON object")
            count += 1
            yield row
        tail = json.loads("{" + text.rest().lstrip().lstrip(","))
        self.meta = self.meta or list(tail.get("meta", []))
        expected = tail.get("rows", head.get("rows"))
        if isinstance(expected, str) and expected.isdigit():
            expected = int(expected)
        if expected != count:
            raise TransientError(f"AE announced {expected} rows but sent {count}: body cut off")


class _TextStream:
    """A window over a streamed body: decoded text is dropped, only the pending part is kept."""

    def __init__(self, chunks: Iterator[str]) -> None:
        self._chunks = chunks
        self._text = ""
        self._pos = 0

    def _more(self) -> bool:
        chunk = next(self._chunks, None)
        if chunk is None:
            return False
        if len(self._text) - self._pos > MAX_PENDING_CHARS:
            raise TransientError("AE sent over 1 MiB that does not decode as a row")
        self._text = self._text[self._pos :] + chunk
        self._pos = 0
        return True

    def read_through(self, pattern: re.Pattern[str]) -> str:
        """Return the text before ``pattern`` and move past it."""
        while (match := pattern.search(self._text, self._pos)) is None:
            if not self._more():
                raise TransientError("AE response ended before its data array: cut off")
        head = self._text[self._pos : match.start()]
        self._pos = match.end()
        return head

    def consume_if(self, char: str) -> bool:
        """Skip separators; consume ``char`` if it comes next."""
        while True:
            while self._pos < len(self._text) and self._text[self._pos] in " \t\r\n,":
                self._pos += 1
            if self._pos < len(self._text):
                break
            if not self._more():
                raise TransientError("AE response ended inside its data array: cut off")
        if self._text[self._pos] == char:
            self._pos += 1
            return True
        return False

    def next_value(self) -> Any:
        while True:
            try:
                value, end = _DECODER.raw_decode(self._text, self._pos)
            except json.JSONDecodeError:
                # Usually the row is only partly here yet; read on until it decodes.
                if not self._more():
                    raise TransientError("AE response ended inside a row: cut off") from None
                continue
            self._pos = end
            return value

    def rest(self) -> str:
        while self._more():
            pass
        return self._text[self._pos :]


class AEClient:
    """One HTTP connection pool to AE's SQL endpoint; the token lives only in its headers."""

    def __init__(
        self, settings: Settings, *, connect_timeout: float = 10.0, read_timeout: float = 90.0
    ) -> None:
        self._settings = settings
        self._url = settings.ae_sql_url
        self._http = httpx.Client(
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
            headers={"Authorization": f"Bearer {settings.ae_api_token}"},
        )

    def __repr__(self) -> str:
        return f"AEClient(url={self._url!r})"

    def __enter__(self) -> AEClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    @contextmanager
    def query(self, sql: str, query_ids: list[str] | None = None) -> Iterator[QueryResult]:
        """Send one statement; yield the open result. Errors leave as classified ClicksErrors."""
        log.debug("AE query:\n%s", sql)
        try:
            with self._http.stream(
                "POST", self._url, content=sql.encode(), headers={"Content-Type": "text/plain"}
            ) as response:
                if query_ids is not None and response.headers.get("x-query-id"):
                    query_ids.append(response.headers["x-query-id"])
                if response.status_code != 200:
                    response.read()
                    raise classify(response, self._settings)
                yield QueryResult(response, self._settings)
        except httpx.HTTPError as exc:
            raise classify(exc, self._settings) from None
