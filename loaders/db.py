"""Postgres connections and the DDL this project owns outside dbt."""

from __future__ import annotations

import logging
import re
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
    """Create the schemas and tables this project writes to, if they are missing.

    Runs a schema's DDL only when one of its relations is missing: even `create index if not
    exists` takes a lock on its table, which would queue behind (or deadlock with) a loader or an
    export that holds the table in an open transaction.
    """
    for schema in schemas:
        text = ddl_text(schema)
        if _missing_relations(conn, schema, text):
            conn.execute(text)
            log.debug("schema %s created or completed", schema)
    conn.commit()


def _missing_relations(conn: psycopg.Connection, schema: str, ddl: str) -> list[str]:
    names = re.findall(r"create (?:table|index) if not exists ([\w.]+)", ddl)
    qualified = [name if "." in name else f"{schema}.{name}" for name in names]
    return [
        name
        for name in qualified
        if conn.execute("select to_regclass(%s)", (name,)).fetchone()[0] is None
    ]
