"""A fault-injecting HTTP proxy for services that run as real processes or containers.

The simulated world injects faults inside the test process. When services call each other over a
real network, their traffic has to pass through something that can do the same on the wire: drop
a request, lose a reply after the effect committed, deliver a request twice or hold it. Kernel
tools (``tc netem``) need privileges a test rarely has, and TCP-level tools cannot duplicate an
HTTP request. So `FaultProxy` is a small HTTP/1.1 reverse proxy that the test process starts in
front of one service and points the other services at (it reads its clients' requests with h11
and forwards them with httpx)::

    from saga_verify.proxy import DropResponse, Duplicate, FaultProxy, scripted

    with FaultProxy("http://127.0.0.1:8001", scripted({1: DropResponse(), 3: Duplicate()})) as proxy:
        ...  # the caller uses proxy.url instead of the service's own URL
        proxy.records  # [(seq, method, path, action, upstream status, ...), ...]

For each request it calls ``decide(request: ProxiedRequest) -> ProxyAction``, on the proxy's own
thread (see `FaultProxy` for what that asks of the function). The actions:

- `Pass`: forward it and answer with the reply;
- `Delay` ``(seconds, until=None)``: hold it for real seconds (or until ``until()`` is true, at
  most those seconds), then forward it;
- `DropRequest`: never forward it; the client connection ends without a reply;
- `Stall`: never forward it and never answer; the client connection stays open until the client
  gives up (its own timeout);
- `DropResponse` ``(then=None)``: forward it, read the whole reply (the effect is committed), run
  ``then()`` if given (on a worker thread: e.g. crash and restart the service, a crash after
  applying), then end the client connection without a reply: the unknown outcome;
- `Duplicate` ``(lag=0)``: forward it twice, one after the other, and answer with the first
  reply; with a ``lag``, answer with the first reply at once and send the copy ``lag`` seconds
  later (recorded on its own when it settles).

``proxy.settle(timeout)`` waits until nothing is in flight in the proxy (no request being decided,
delayed, awaiting its upstream reply or in a ``then``, no lagged copy pending), so a test can read
the upstream's state once every fault has played out.

`PlanAtProxies` plays a whole `saga_verify.FaultPlan` at the proxies of a saga's participants,
for a saga that runs inside a service of its own (black-box): each proxy numbers the calls of each
operation (its routes come from `routes_from_openapi`) and plays the plan's fault at the planned
attempt, pauses and crashes through the participant's own ``pause``/``unpause``/``restart``.

`scripted` builds ``decide`` from a table keyed by the request's number on the proxy;
`scripted_by_delivery` from one keyed by the harness's ``Saga-Verify-Delivery`` header. An upstream
that cannot be reached is answered 502 with a JSON body naming it; a request the proxy cannot read
is answered 400 with the reason.
"""

from ._actions import (
    Decide,
    Delay,
    DropRequest,
    DropResponse,
    Duplicate,
    Pass,
    ProxiedRequest,
    ProxyAction,
    ProxyRecord,
    Stall,
    scripted,
    scripted_by_delivery,
)
from ._plans import AppliedFault, PlanAtProxies, ProxiedService, routes_from_openapi
from ._proxy import FaultProxy

__all__ = [
    "AppliedFault",
    "Decide",
    "Delay",
    "DropRequest",
    "DropResponse",
    "Duplicate",
    "FaultProxy",
    "Pass",
    "PlanAtProxies",
    "ProxiedRequest",
    "ProxiedService",
    "ProxyAction",
    "ProxyRecord",
    "Stall",
    "routes_from_openapi",
    "scripted",
    "scripted_by_delivery",
]
