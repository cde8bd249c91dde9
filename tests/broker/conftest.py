"""Fixtures of the broker tests: one private NATS server with JetStream per test session. Without
a ``nats-server`` binary they skip, saying how to get one; with ``REQUIRE_BROKER=1`` (CI) they
fail instead."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from saga_verify.broker import BrokerUnavailableError, NatsServer, open_nats_server

REQUIRE_BROKER = "REQUIRE_BROKER"


@pytest.fixture(scope="session")
def nats_server() -> Iterator[NatsServer]:
    """A running ``nats-server -js`` on loopback, private to this session (each xdist worker has its own)."""
    try:
        with open_nats_server() as server:
            yield server
    except BrokerUnavailableError as exc:
        if os.environ.get(REQUIRE_BROKER) == "1":
            pytest.fail(f"{REQUIRE_BROKER}=1, but {exc}", pytrace=False)
        pytest.skip(f"no NATS server to test against: {exc}")
