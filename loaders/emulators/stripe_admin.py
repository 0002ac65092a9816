"""Client helpers for the Stripe emulator's own endpoints (clock, faults, reset, event list).

These exist only on the emulator; real Stripe has no such endpoints (its test clocks work per
customer and need no helper here).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

TIMEOUT_S = 30


def _post(base: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(base.rstrip("/") + path, json=body, timeout=TIMEOUT_S)
    response.raise_for_status()
    return response.json()


def set_clock(base: str, when: datetime | str | None) -> dict[str, Any]:
    """Freeze the emulator's clock at ``when`` (aware datetime or ISO text); None = real time."""
    text = when.isoformat() if isinstance(when, datetime) else when
    return _post(base, "/emulator/clock", {"now": text})


def get_clock(base: str) -> dict[str, Any]:
    response = httpx.get(base.rstrip("/") + "/emulator/clock", timeout=TIMEOUT_S)
    response.raise_for_status()
    return response.json()


def queue_faults(base: str, faults: list[dict[str, Any]]) -> int:
    """Queue one fault per coming /v1 request, in order; returns how many are queued."""
    return int(_post(base, "/emulator/faults", {"faults": faults})["queued"])


def reset(base: str) -> None:
    """Forget events, idempotency keys, faults and the clock."""
    _post(base, "/emulator/reset", {})


def list_events(base: str) -> list[dict[str, Any]]:
    """Every meter event the emulator accepted, oldest first."""
    response = httpx.get(base.rstrip("/") + "/emulator/meter_events", timeout=TIMEOUT_S)
    response.raise_for_status()
    return response.json()["data"]
