"""One exception hierarchy for the whole pipeline.

Every error is either transient (the same call may succeed if retried later) or terminal (retrying
cannot help: fix the input, the credentials or the code). Callers retry on ``TransientError`` only;
the CLI maps every ``ClicksError`` to an exit code and a one-line message.
"""

from __future__ import annotations


class ClicksError(Exception):
    """Base of every error this project raises on purpose."""

    exit_code = 1


class TransientError(ClicksError):
    """A failure worth retrying: rate limits, timeouts, 5xx, cut-off bodies, dropped connections."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TerminalError(ClicksError):
    """A failure retrying cannot fix."""


class ConfigError(TerminalError):
    """A setting is missing or malformed; the message names the variable."""


class BadValueError(TerminalError):
    """A value from AE or an input file broke the contract; the message says where."""


class ResultTooLargeError(TransientError):
    """AE refused a query as too large; the caller should narrow the window and retry."""


class ConcurrentRunError(TerminalError):
    """Another process holds the lock this one needs."""


class GateRefusedError(TerminalError):
    """The billing gate refused the export because dbt tests of the cycle did not all pass."""

    exit_code = 3


class ReplayRefusedError(TerminalError):
    """A cycle older than the newest booked one was asked for without the replay flag."""
