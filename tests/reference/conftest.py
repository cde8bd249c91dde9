"""Fixtures of the reference system's tests: a throw-away PostgreSQL server for the saga log."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

# The shop's own asserts (the plan played out, no errors) say what they compared when they fail.
pytest.register_assert_rewrite("durable_shop")

from postgres_server import postgres_server  # noqa: E402


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """The connection string of a throw-away PostgreSQL server (skips without PostgreSQL)."""
    with postgres_server() as conninfo:
        yield conninfo
