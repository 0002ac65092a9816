"""Run dbt as the nightly job does: a subprocess per invocation, pointed at the same Postgres.

A subprocess rather than dbt's in-process runner: every cycle starts from a clean interpreter,
dbt's own logging and global flags cannot leak between cycles, and a crash in dbt cannot take
the nightly's lock and run record down with it.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from loaders.errors import TerminalError
from loaders.settings import Settings, clicks_home, libpq_env, project_dir

log = logging.getLogger(__name__)

SUMMARY_PREFIXES = ("Done.", "Completed", "Finished running")


@dataclass(frozen=True)
class DbtResult:
    command: str
    returncode: int
    seconds: float
    summary: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def dbt_env(settings: Settings) -> dict[str, str]:
    """The environment dbt needs: PG* from DATABASE_URL and per-stack artifact paths."""
    home = clicks_home()
    env = {**os.environ, **libpq_env(settings.database_url)}
    env["DBT_PROFILES_DIR"] = env.get("DBT_PROFILES_DIR") or str(project_dir())
    env.setdefault("DBT_TARGET_PATH", str(home / "dbt" / "target"))
    env.setdefault("DBT_LOG_PATH", str(home / "dbt" / "logs"))
    env["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    return env


def dbt_executable() -> str:
    candidate = Path(sys.executable).with_name("dbt")
    if not candidate.exists():
        raise TerminalError(f"dbt is not installed beside {sys.executable}: run `make venv`")
    return str(candidate)


def run_dbt(
    settings: Settings,
    args: list[str],
    *,
    run_date: date | None = None,
    extra_vars: dict[str, object] | None = None,
) -> DbtResult:
    """Run one dbt command; stream its lines to the debug log and keep the summary line."""
    variables = dict(extra_vars or {})
    if run_date is not None:
        variables["run_date"] = run_date.isoformat()
    command = [dbt_executable(), *args, "--no-use-colors"]
    if variables:
        command += ["--vars", json.dumps(variables)]
    started = time.monotonic()
    summary = _stream(command, dbt_env(settings))
    seconds = time.monotonic() - started
    returncode = summary[0]
    log.debug("dbt %s exited %s after %.1f s", args[0], returncode, seconds)
    return DbtResult(" ".join(args), returncode, seconds, summary[1])


def _stream(command: list[str], env: dict[str, str]) -> tuple[int, str]:
    summary = ""
    with subprocess.Popen(
        command,
        cwd=project_dir(),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            text = line.rstrip()
            log.debug("dbt | %s", text)
            if _is_problem(text):
                log.warning("dbt | %s", text.split(" ", 1)[-1])
            body = text.split(" ", 1)[-1].strip()
            if body.startswith("Done."):
                summary = body
    return proc.returncode, summary


def _is_problem(line: str) -> bool:
    return any(
        marker in line
        for marker in (" FAIL ", " ERROR ", "Compilation Error", "Database Error", "Runtime Error")
    )
