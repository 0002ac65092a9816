"""Where every command finds its services.

The same environment variables drive the local stack and production (Neon, the real AE, Stripe):

- ``DATABASE_URL``: the Postgres holding ``app``, ``raw``, ``billing``, ``ops`` and the dbt models.
- ``AE_SQL_URL``: the full AE SQL endpoint, ``.../client/v4/accounts/<id>/analytics_engine/sql``.
- ``AE_ACCOUNT_ID``, ``AE_API_TOKEN``, ``AE_DATASET``.
- ``STRIPE_API_BASE``, ``STRIPE_API_KEY``.

When a variable is unset, the value comes from the local stack that ``clicks up`` started under
``$CLICKS_HOME`` (default ``.local/`` in the working directory), so a newcomer needs no setup.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from loaders.errors import ConfigError

DATASET_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
STACK_FILE = "stack.json"


class Secret(str):
    """A string that never shows itself in repr, logs or tracebacks."""

    def __repr__(self) -> str:
        return "Secret('***')"


def clicks_home() -> Path:
    return Path(os.environ.get("CLICKS_HOME") or Path.cwd() / ".local").resolve()


def project_dir() -> Path:
    """The repository root: where dbt_project.yml lives."""
    return Path(__file__).resolve().parent.parent


def read_stack_state(home: Path | None = None) -> dict[str, str]:
    path = (home or clicks_home()) / STACK_FILE
    if not path.exists():
        return {}
    return json.loads(path.read_text())


@dataclass(frozen=True)
class Settings:
    database_url: Secret
    ae_sql_url: str
    ae_account_id: str
    ae_api_token: Secret
    ae_dataset: str
    stripe_api_base: str
    stripe_api_key: Secret

    @classmethod
    def load(cls, *, require: tuple[str, ...] = ()) -> Settings:
        """Read the environment, falling back to the local stack; check what the caller needs."""
        state = read_stack_state()
        values = {
            name: os.environ.get(name.upper()) or state.get(name.upper(), "") for name in _FIELDS
        }
        for name in require:
            if not values[name]:
                raise ConfigError(
                    f"{name.upper()} is not set and no local stack runs under {clicks_home()}: "
                    'run `clicks up` and `eval "$(clicks env)"`, or export it'
                )
        if values["ae_dataset"] and not DATASET_PATTERN.fullmatch(values["ae_dataset"]):
            raise ConfigError(
                f"AE_DATASET {values['ae_dataset']!r} is not a plain identifier "
                "(letters, digits, underscore; at most 64 characters)"
            )
        return cls(
            database_url=Secret(values["database_url"]),
            ae_sql_url=values["ae_sql_url"],
            ae_account_id=values["ae_account_id"],
            ae_api_token=Secret(values["ae_api_token"]),
            ae_dataset=values["ae_dataset"] or "clicks",
            stripe_api_base=values["stripe_api_base"],
            stripe_api_key=Secret(values["stripe_api_key"]),
        )


_FIELDS = (
    "database_url",
    "ae_sql_url",
    "ae_account_id",
    "ae_api_token",
    "ae_dataset",
    "stripe_api_base",
    "stripe_api_key",
)


def libpq_env(database_url: str) -> dict[str, str]:
    """PG* variables for dbt's profile and psql, derived from DATABASE_URL."""
    parts = urlsplit(database_url)
    env = {
        "PGHOST": parts.hostname or "",
        "PGPORT": str(parts.port or 5432),
        "PGUSER": unquote(parts.username or ""),
        "PGPASSWORD": unquote(parts.password or ""),
        "PGDATABASE": parts.path.lstrip("/") or "postgres",
    }
    query = dict(pair.split("=", 1) for pair in parts.query.split("&") if "=" in pair)
    env["PGSSLMODE"] = query.get("sslmode", "prefer")
    return env


def redact(text: str, settings: Settings | None = None) -> str:
    """Remove every known secret from a message before it is logged or raised."""
    secrets = [] if settings is None else [settings.ae_api_token, settings.stripe_api_key]
    if settings is not None and settings.database_url:
        password = urlsplit(settings.database_url).password
        if password:
            secrets.append(password)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def host_of(url: str) -> str:
    """The host a URL or libpq connection string names, including ``?host=`` / ``host=``."""
    found = re.search(r"(?:^|[\s?&])host=([^\s&]+)", url)
    if "://" not in url:
        return found.group(1) if found else ""
    return urlsplit(url).hostname or (unquote(found.group(1)) if found else "")


def is_local(url: str) -> bool:
    """True for loopback hosts and Unix sockets (no host, or a directory): this machine only."""
    host = host_of(url)
    if not host or host.startswith("/") or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
