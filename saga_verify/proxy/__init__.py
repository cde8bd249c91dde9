"""A fault-injecting HTTP proxy for services that run as real processes or containers.

The simulated world injects faults inside the test process. When services call each other over a
real network, their traffic has to pass through something that can do the same on the wire: drop
a request, lose a reply after the effect committed, deliver a request twice or hold it. Kernel
tools (``tc netem``) need privileges a test rarely has, and TCP-level tools cannot duplicate an
HTTP request. So `FaultProxy` is a small HTTP/1.1 reverse proxy that the test process starts in
front of one service and points the other services at::

    from saga_verify.proxy import DropResponse, Duplicate, FaultProxy, scripted

    with FaultProxy("http://127.0.0.1:8001", scripted({1: DropResponse(), 3: Duplicate()})) as proxy:
        ...  # the caller uses proxy.url instead of the service's own URL
        proxy.records  # [(seq, method, path, action, upstream status, ...), ...]

For each request it calls ``decide(request: ProxiedRequest) -> ProxyAction``, on the proxy's own
thread (see `FaultProxy` for what that asks of the function). The actions:

- `Pass`: forward it and answer with the reply;
- `Delay` ``(seconds)``: hold it for real seconds, then forward it;
- `DropRequest`: never forward it; the client connection ends without a reply;
- `DropResponse`: forward it, read the whole reply (the effect is committed), then end the
  client connection without a reply: the unknown outcome;
- `Duplicate`: forward it twice, one after the other, and answer with the first reply.

`scripted` builds ``decide`` from a table keyed by the request's number on the proxy;
`scripted_by_delivery` from one keyed by the harness's ``Saga-Verify-Delivery`` header. An upstream
that cannot be reached is answered 502 with a JSON body naming it; a request the proxy cannot read
is answered 400 with the reason.
"""

from ._proxy import (
    Decide,
    Delay,
    DropRequest,
    DropResponse,
    Duplicate,
    FaultProxy,
    Pass,
    ProxiedRequest,
    ProxyAction,
    ProxyRecord,
    scripted,
    scripted_by_delivery,
)

__all__ = [
    "Decide",
    "Delay",
    "DropRequest",
    "DropResponse",
    "Duplicate",
    "FaultProxy",
    "Pass",
    "ProxiedRequest",
    "ProxyAction",
    "ProxyRecord",
    "scripted",
    "scripted_by_delivery",
]
