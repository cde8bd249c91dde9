"""Make a reference service publish a given event, for message-pact verification.

A message pact says what a consumer expects of an event; verifying it means checking the event
the provider really publishes, not one written for the test. `event_producer` does that: for an
interaction described as ``"a payment.charged event"`` it drives the service through its own
HTTP API (a charge, then a refund so that nothing is left standing) and answers the event of that
type it finds in the service's outbox. It works on any running copy (in-process, process,
container), through the client it is given.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import httpx

from ._events import EVENT_TYPES

__all__ = ["event_producer", "event_description"]

#: service -> event type -> the requests (method, path, body, key) that publish it; "{n}" is a
#: number unique to the call. Each also undoes what it did where it can, so stock does not run out.
_RECIPES: dict[str, dict[str, list[tuple[str, dict[str, Any], str]]]] = {
    "inventory": {
        "stock.reserved": [
            ("/reservations", {"order_id": "pact-{n}", "sku": "sku-1", "qty": 1}, "pact-{n}:reserve"),
            ("/releases", {"reserve_key": "pact-{n}:reserve"}, "pact-{n}:release"),
        ],
    },
    "payment": {
        "payment.charged": [
            ("/charges", {"order_id": "pact-{n}", "amount": 100}, "pact-{n}:charge"),
            ("/refunds", {"charge_key": "pact-{n}:charge"}, "pact-{n}:refund"),
        ],
    },
    "shipping": {
        "shipment.created": [
            ("/shipments", {"order_id": "pact-{n}", "reservation_id": "res-{n}"}, "pact-{n}:ship"),
            ("/cancellations", {"shipment_key": "pact-{n}:ship"}, "pact-{n}:cancel"),
        ],
    },
    "notification": {
        "notification.sent": [
            ("/notifications", {"order_id": "pact-{n}", "message": "order pact-{n} is on its way"}, "pact-{n}:notify"),
        ],
    },
    "order": {
        "order.completed": [("/orders", {"order_id": "pact-{n}", "sku": "sku-1", "qty": 1, "amount": 100}, "pact-{n}")],
        # More than any stock: the reservation is refused and the saga compensates.
        "order.compensated": [("/orders", {"order_id": "pact-{n}", "sku": "sku-1", "qty": 1000000, "amount": 100}, "pact-{n}")],
    },
}
# The undo step of a recipe publishes the opposite event, which is just as real.
_RECIPES["inventory"]["stock.released"] = _RECIPES["inventory"]["stock.reserved"]
_RECIPES["payment"]["payment.refunded"] = _RECIPES["payment"]["payment.charged"]
_RECIPES["shipping"]["shipment.cancelled"] = _RECIPES["shipping"]["shipment.created"]


def event_description(event_type: str) -> str:
    """How a message pact describes an event of ``event_type``: ``"a payment.charged event"``."""
    return f"a {event_type} event"


def _fill(value: Any, n: str) -> Any:
    if isinstance(value, str):
        return value.replace("{n}", n)
    if isinstance(value, dict):
        return {k: _fill(v, n) for k, v in value.items()}
    return value


def event_producer(service: str, client: httpx.Client, *, prefix: str = "") -> Callable[[str], dict[str, Any]]:
    """A message producer (`saga_verify.contracts.verify_provider`'s ``messages=``) for the
    reference ``service`` reached through ``client`` (its base URL the service's). ``prefix``
    keeps the order ids of separate producers on one service apart."""
    recipes = _RECIPES.get(service)
    if recipes is None:
        raise ValueError(f"no events are known for service {service!r}; known: {', '.join(_RECIPES)}")
    publishes = {t for (s, _), t in EVENT_TYPES.items() if s == service}
    counter = itertools.count(1)

    def produce(description: str) -> dict[str, Any]:
        event_type = description.removeprefix("a ").removesuffix(" event")
        if event_type not in recipes:
            raise KeyError(
                f"no recipe publishes {description!r} on the {service} service; it publishes "
                + ", ".join(repr(event_description(t)) for t in sorted(publishes))
            )
        n = f"{prefix}{next(counter)}"
        start = client.get("/events", params={"after": 0, "limit": 1}).json()
        position = _last_position(client, start)
        for path, body, key in recipes[event_type]:
            response = client.post(path, json=_fill(body, n), headers={"Idempotency-Key": _fill(key, n)})
            if response.status_code >= 500 or response.status_code == 422:
                raise RuntimeError(f"POST {path} answered {response.status_code}: {response.text[:300]}")
        page = client.get("/events", params={"after": position, "limit": 1000}).json()
        for event in page["events"]:
            if event.get("type") == event_type:
                found: dict[str, Any] = event
                return found
        raise LookupError(f"the {service} service published no {event_type} event (it published {page['events']!r})")

    return produce


def _last_position(client: httpx.Client, first: dict[str, Any]) -> int:
    """The position of the newest event in the outbox (pages through it)."""
    position = 0
    page = first
    while page["events"]:
        position = page["next"]
        page = client.get("/events", params={"after": position, "limit": 1000}).json()
    return position
