"""A choreography over a real message broker: NATS JetStream.

`open_nats_server` starts a private server (its own port and store) for a test run;
`JetStreamBus` runs a choreography's handlers as durable consumers of a JetStream stream, with
explicit acknowledgements, redelivery, a bounded number of deliveries and a dead-letter stream,
and injects duplicate, redelivery and delay faults at publish and consume. The NATS client
(``nats-py``, the ``broker`` extra) is imported only when a run begins.
"""

from ._errors import BrokerError, BrokerUnavailableError
from ._jetstream import (
    BrokerEntry,
    BrokerFault,
    BrokerRun,
    Consumer,
    DeadLetter,
    FaultChooser,
    JetStreamBus,
    Rejected,
    faults_from,
)
from ._server import NatsServer, find_nats_server, open_nats_server

__all__ = [
    "BrokerEntry",
    "BrokerError",
    "BrokerFault",
    "BrokerRun",
    "BrokerUnavailableError",
    "Consumer",
    "DeadLetter",
    "FaultChooser",
    "JetStreamBus",
    "NatsServer",
    "Rejected",
    "faults_from",
    "find_nats_server",
    "open_nats_server",
]
