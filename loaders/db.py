"""Postgres connections and the DDL this project owns outside dbt."""

from __future__ import annotations

import logging
from importlib import resources

import psycopg

from loaders.errors import ConfigError, TransientError
from loaders.settings import Settings

log = logging.getLogger(__name__)

# Applied in this order; each file is idempotent (create ... if not exists).
SCHEMAS = ("app", "raw", "billing", "ops")
# What the pipeline itself writes. `app` belongs to the application (Neon's system of record):
# only the local stack and the simulator create it, so the nightly needs no rights on it.
PIPELINE_SCHEMAS = ("raw", "billing", "ops")


def connect(settings: Settings, *, autocommit: bool = False) -> psycopg.Connection:
    if not settings.database_url:
        raise ConfigError("DATABASE_URL is not set: run `clicks up` or export it")
    try:
        return psycopg.connect(settings.database_url, autocommit=autocommit, connect_timeout=10)
    except psycopg.OperationalError as exc:
        # The driver's message can echo the DSN; keep only its first line, which does not.
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise TransientError(f"cannot connect to DATABASE_URL: {reason}") from None


def ddl_text(schema: str) -> str:
    return resources.files("loaders.sql").joinpath(f"{schema}.sql").read_text()


def ensure_schemas(conn: psycopg.Connection, schemas: tuple[str, ...] = SCHEMAS) -> None:
    """Create the schemas and tables this project writes to, if they are missing."""
    for schema in schemas:
        conn.execute(ddl_text(schema))
    conn.commit()
    log.debug("schemas ready: %s", ", ".join(schemas))
