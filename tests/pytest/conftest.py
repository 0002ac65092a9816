"""Shared fixtures: every test runs against the real local stack over loopback.

The stack lives under $CLICKS_HOME (make test uses .local/test). Tests that need an empty database
get their own, created on the same embedded server, so they never see each other's rows.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import psycopg
import pytest

from loaders import stack
from loaders.db import ensure_schemas
from loaders.settings import Secret, Settings

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def stack_env() -> dict[str, str]:
    """Start (or reuse) the stack and point this process's environment at it."""
    os.environ.setdefault("CLICKS_HOME", str(REPO / ".local" / "test"))
    state = stack.up(Path(os.environ["CLICKS_HOME"]))
    for name in stack.ENV_NAMES:
        os.environ[name] = state[name]
    return state


@pytest.fixture(scope="session")
def settings(stack_env: dict[str, str]) -> Settings:
    return Settings.load()


@pytest.fixture
def ae_reset(stack_env: dict[str, str]) -> str:
    """An empty AE emulator with no queued faults; returns its base URL."""
    base = stack_env["_ae_base"]
    httpx.post(f"{base}/emulator/reset", timeout=30).raise_for_status()
    return base


@pytest.fixture
def stripe_reset(stack_env: dict[str, str]) -> str:
    """An empty Stripe emulator with no queued faults; returns its base URL."""
    base = stack_env["_stripe_base"]
    httpx.post(f"{base}/emulator/reset", timeout=30).raise_for_status()
    return base


@pytest.fixture
def fresh_db(settings: Settings) -> Iterator[Settings]:
    """Settings pointing at a new, empty database with the project's schemas created."""
    name = "t_" + uuid.uuid4().hex[:12]
    admin = settings.database_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    url = settings.database_url.rsplit("/", 1)[0] + f"/{name}"
    fresh = replace(settings, database_url=Secret(url))
    with psycopg.connect(url) as conn:
        ensure_schemas(conn)
    yield fresh
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')
