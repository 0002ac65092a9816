"""`clicks reset`: drop what the pipeline built and empty the emulators, on the local stack only.

The demo and `make test` start from here, so a second run behaves like the first. It refuses a
DATABASE_URL that is not on this machine: production history is never one command away.
"""

from __future__ import annotations

import argparse
import logging

from psycopg import sql

from loaders.db import connect, ensure_schemas
from loaders.errors import TerminalError
from loaders.settings import Settings, clicks_home, host_of, is_local, read_stack_state

log = logging.getLogger(__name__)

PIPELINE_SCHEMAS = (
    "raw",
    "staging",
    "intermediate",
    "marts",
    "policy",
    "billing",
    "ops",
    "analytics",
)


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    del name
    parser.add_argument("--yes", action="store_true", help="required: confirms the data goes")


def run(args: argparse.Namespace) -> int:
    if not args.yes:
        raise TerminalError("`clicks reset` drops raw, marts, billing and ops: add --yes")
    reset(Settings.load(require=("database_url",)))
    return 0


def reset(settings: Settings) -> None:
    if not is_local(settings.database_url):
        host = host_of(settings.database_url)
        raise TerminalError(f"refusing to reset a database on {host}: only the local stack")
    with connect(settings, autocommit=True) as conn:
        for schema in PIPELINE_SCHEMAS:
            conn.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(schema)))
        conn.execute("truncate app.rentals, app.renters, app.routes")
        ensure_schemas(conn)
    _reset_emulators()
    for cache in (clicks_home() / "dbt" / "target").glob("partial_parse.msgpack"):
        cache.unlink()
    log.info("reset: pipeline schemas dropped, app emptied, emulators emptied")


def _reset_emulators() -> None:
    from loaders.emulators import ae_admin, stripe_admin

    state = read_stack_state()
    if state.get("_ae_base"):
        ae_admin.reset(state["_ae_base"])
    if state.get("_stripe_base"):
        stripe_admin.reset(state["_stripe_base"])
