"""A choreography over a real message broker: NATS JetStream.

`NatsBroker` connects to a server and gives each execution of a choreography its own stream,
dead-letter stream and one durable consumer per handler (explicit acknowledgement, redelivery
after a nack or when the ack wait runs out, a bounded number of deliveries); the plan's faults
at each publish and delivery work as on the simulated bus, and the same invariants judge the
services' state once the broker is quiet. `open_nats_server` starts a private server for a test
run. `NatsServices` verifies a team's own services written with the NATS client, unchanged: each
connects through a proxy the harness owns, where the plan's faults meet its publishes and the
deliveries to its consumers. The NATS client (``nats-py``, the ``broker`` extra) is imported only
when first used.
"""

from ._errors import BrokerError, BrokerUnavailableError
from ._nats import NatsBroker
from ._nats_services import NatsServices
from ._server import NatsServer, find_nats_server, open_nats_server

__all__ = [
    "BrokerError",
    "BrokerUnavailableError",
    "NatsBroker",
    "NatsServer",
    "NatsServices",
    "find_nats_server",
    "open_nats_server",
]
