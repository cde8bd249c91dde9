"""What goes wrong with a broker, under saga-verify's one error root."""

from __future__ import annotations

from ..errors import SagaVerifyError


class BrokerError(SagaVerifyError):
    """The broker cannot be used: it cannot be reached, a stream or consumer cannot be created, or
    the run did not settle in time. The message names the broker, the stream and the cause."""


class BrokerUnavailableError(BrokerError):
    """There is no broker to start here (no ``nats-server`` binary) or no client library
    (``nats-py``): install saga-verify's ``broker`` extra."""
