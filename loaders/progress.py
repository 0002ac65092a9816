"""A progress bar for long steps, drawn only when a person is watching (stderr is a terminal).

In CI and cron the per-step log lines are the whole story; a bar there would only add noise.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

WIDTH = 30


def terminal_progress(label: str) -> Callable[[int, int], None] | None:
    """A callback ``(done, total)`` that redraws a bar, or None when stderr is not a terminal."""
    if not sys.stderr.isatty():
        return None
    started = time.monotonic()

    def draw(done: int, total: int) -> None:
        filled = WIDTH * done // max(total, 1)
        elapsed = time.monotonic() - started
        bar = "#" * filled + "." * (WIDTH - filled)
        end = "\n" if done >= total else ""
        sys.stderr.write(f"\r{label} [{bar}] {done}/{total} ({elapsed:.1f} s){end}")
        sys.stderr.flush()

    return draw
