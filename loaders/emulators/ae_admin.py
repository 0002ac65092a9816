"""Clients for the AE emulator's own endpoints: write points, queue faults, reset.

These endpoints exist only in the emulator (real AE is written to by Workers, not over HTTP); see
docs/ae_emulator.md. They take no credential.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import httpx

from loaders.errors import TerminalError, TransientError

log = logging.getLogger(__name__)

BATCH_SIZE = 100_000
TIMEOUT_S = 300.0


def write_points(
    base_url: str,
    dataset: str,
    points: Sequence[Mapping[str, Any]],
    *,
    client: httpx.Client | None = None,
    batch_size: int = BATCH_SIZE,
) -> int:
    """Write points to a dataset, creating it on first write; return how many were written.

    A point is {"blobs": [...], "doubles": [...], "indexes": [one], "timestamp": ISO 8601 or an
    aware datetime, "sample_interval": int}. Each batch is all-or-nothing; a rejected batch
    raises TerminalError after the earlier batches were written.
    """
    url = f"{base_url.rstrip('/')}/emulator/datasets/{dataset}/points"
    written = 0
    with _client(client) as http:
        for start in range(0, len(points), batch_size):
            batch = [_wire_point(point) for point in points[start : start + batch_size]]
            response = _post(http, url, {"points": batch})
            if response.status_code != 200:
                raise TerminalError(
                    f"AE emulator refused the batch starting at point {start} of dataset "
                    f"{dataset} ({response.status_code}): {response.text}; fix the points"
                )
            written += int(response.json()["written"])
    log.debug("wrote %d points to emulator dataset %s", written, dataset)
    return written


def queue_faults(
    base_url: str, faults: Sequence[Mapping[str, Any]], *, client: httpx.Client | None = None
) -> int:
    """Queue one fault per upcoming SQL request, in order; return the queue's length."""
    with _client(client) as http:
        response = _post(http, f"{base_url.rstrip('/')}/emulator/faults", {"faults": list(faults)})
    if response.status_code != 200:
        raise TerminalError(f"AE emulator refused the faults: {response.text}")
    return int(response.json()["queued"])


def reset(base_url: str, *, client: httpx.Client | None = None) -> None:
    """Drop every dataset and every queued fault."""
    with _client(client) as http:
        response = _post(http, f"{base_url.rstrip('/')}/emulator/reset", {})
    if response.status_code != 200:
        raise TerminalError(f"AE emulator reset failed ({response.status_code}): {response.text}")


class _Borrowed:
    """Lend a caller's client without closing it; own and close a new one otherwise."""

    def __init__(self, client: httpx.Client | None) -> None:
        self.client = client or httpx.Client(timeout=TIMEOUT_S)
        self.owned = client is None

    def __enter__(self) -> httpx.Client:
        return self.client

    def __exit__(self, *exc: object) -> None:
        if self.owned:
            self.client.close()


def _client(client: httpx.Client | None) -> _Borrowed:
    return _Borrowed(client)


def _post(http: httpx.Client, url: str, doc: Mapping[str, Any]) -> httpx.Response:
    body = json.dumps(doc, separators=(",", ":")).encode()
    try:
        return http.post(url, content=body, headers={"Content-Type": "application/json"})
    except httpx.HTTPError as exc:
        message = f"AE emulator at {url} did not answer: {exc}; is the stack up?"
        raise TransientError(message) from exc


def _wire_point(point: Mapping[str, Any]) -> Mapping[str, Any]:
    stamp = point.get("timestamp")
    if isinstance(stamp, datetime):
        return {**point, "timestamp": stamp.isoformat()}
    return point
