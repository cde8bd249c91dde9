"""Fixtures of the reference system's tests: a throw-away PostgreSQL server for the saga log."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from postgres_server import postgres_server


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """The connection string of a throw-away PostgreSQL server (skips without PostgreSQL)."""
    with postgres_server() as conninfo:
        yield conninfo
