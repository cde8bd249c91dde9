"""The audit: a consumer of every reference service's events that reconciles each order.

Events arrive at least once and in any order across sources, so the audit deduplicates by
(``source``, ``id``) and judges nothing until asked (`Audit.findings`). It reads only the fields
it needs (``type``, ``version``, ``id``, ``source``, ``correlation_id`` and the ``data`` fields of
the types it knows) and ignores the rest, so a publisher may add fields without breaking it;
those fields are exactly what its message pacts (``contracts/pacts/audit-<service>.json``) ask
of each publisher.

What it finds, per order (correlation id):
- more than one charge, reservation or shipment (a double effect);
- an order compensated with a charge not refunded, a reservation not released or a shipment not
  cancelled, or with the customer notified;
- an order completed without exactly one standing charge, reservation and shipment;
- a refund, release or cancellation larger than what it undoes;
- an order that failed (an operator must act).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["KNOWN_EVENTS", "Audit", "AuditEvent", "EventRejected", "read_event"]

#: The envelope version the audit reads.
VERSION = 1

#: Event type -> the ``data`` fields the audit reads, with their types.
KNOWN_EVENTS: Mapping[str, Mapping[str, type]] = {
    "stock.reserved": {"reservation_id": str, "qty": int},
    "stock.released": {"reservation_id": str, "qty": int},
    "payment.charged": {"charge_id": str, "amount": int},
    "payment.refunded": {"charge_id": str, "amount": int},
    "shipment.created": {"shipment_id": str},
    "shipment.cancelled": {"shipment_id": str},
    "notification.sent": {"message_id": str},
    "order.completed": {"order_id": str},
    "order.compensated": {"order_id": str},
    "order.failed": {"order_id": str},
}


class EventRejected(ValueError):
    """An event the audit cannot read; the message names the field and what is wrong with it."""


@dataclass(frozen=True)
class AuditEvent:
    """What the audit reads of one event."""

    type: str
    id: str
    source: str
    correlation_id: str
    data: Mapping[str, Any]


def _field(document: Mapping[str, Any], name: str, kind: type, where: str) -> Any:
    if name not in document:
        raise EventRejected(f"{where}{name} is missing")
    value = document[name]
    # bool is an int in Python, never in an event.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise EventRejected(f"{where}{name} is {json.dumps(value)[:80]}, not a {kind.__name__}")
    return value


def read_event(body: bytes | str | Mapping[str, Any]) -> AuditEvent:
    """Read an event (its JSON text, or the object), or raise `EventRejected` saying why not."""
    if isinstance(body, bytes | str):
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError) as error:
            raise EventRejected(f"not JSON: {error}") from None
    else:
        document = body
    if not isinstance(document, Mapping):
        raise EventRejected(f"an event is a JSON object, not {type(document).__name__}")
    event_type = _field(document, "type", str, "")
    version = _field(document, "version", int, "")
    if version != VERSION:
        raise EventRejected(f"version {version} of {event_type!r} is not known (this audit reads version {VERSION})")
    wanted = KNOWN_EVENTS.get(event_type)
    if wanted is None:
        raise EventRejected(f"type {event_type!r} is not known")
    data = _field(document, "data", Mapping, "")
    return AuditEvent(
        event_type,
        _field(document, "id", str, ""),
        _field(document, "source", str, ""),
        _field(document, "correlation_id", str, ""),
        {name: _field(data, name, kind, "data.") for name, kind in wanted.items()},
    )


@dataclass
class _Order:
    charges: dict[str, int] = field(default_factory=dict)
    refunds: dict[str, int] = field(default_factory=dict)
    reservations: dict[str, int] = field(default_factory=dict)
    releases: dict[str, int] = field(default_factory=dict)
    shipments: set[str] = field(default_factory=set)
    cancellations: set[str] = field(default_factory=set)
    notifications: int = 0
    outcome: str | None = None


class Audit:
    """Folds events into one account per order; `findings` reconciles them."""

    def __init__(self) -> None:
        self._seen: set[tuple[str, str]] = set()
        self.orders: dict[str, _Order] = {}

    def handle(self, body: bytes | str | Mapping[str, Any], metadata: Mapping[str, Any] | None = None) -> bool:
        """Take one event; False if it was seen before (a redelivery), True if it counted.
        ``metadata`` (the transport's) is not read. Raises `EventRejected` for an unreadable event."""
        event = read_event(body)
        if (event.source, event.id) in self._seen:
            return False
        self._seen.add((event.source, event.id))
        order = self.orders.setdefault(event.correlation_id, _Order())
        data = event.data
        kind = event.type
        if kind == "payment.charged":
            order.charges[data["charge_id"]] = order.charges.get(data["charge_id"], 0) + data["amount"]
        elif kind == "payment.refunded":
            order.refunds[data["charge_id"]] = order.refunds.get(data["charge_id"], 0) + data["amount"]
        elif kind == "stock.reserved":
            order.reservations[data["reservation_id"]] = order.reservations.get(data["reservation_id"], 0) + data["qty"]
        elif kind == "stock.released":
            order.releases[data["reservation_id"]] = order.releases.get(data["reservation_id"], 0) + data["qty"]
        elif kind == "shipment.created":
            order.shipments.add(data["shipment_id"])
        elif kind == "shipment.cancelled":
            order.cancellations.add(data["shipment_id"])
        elif kind == "notification.sent":
            order.notifications += 1
        else:
            order.outcome = kind.rsplit(".", 1)[1]
        return True

    def findings(self) -> list[str]:
        """What does not add up, one line per problem, by order id."""
        found: list[str] = []
        for order_id, order in sorted(self.orders.items()):
            found += [f"{order_id}: {problem}" for problem in _problems(order)]
        return found


def _problems(order: _Order) -> list[str]:
    problems: list[str] = []
    for what, effects in (("charge", order.charges), ("reservation", order.reservations), ("shipment", order.shipments)):
        if len(effects) > 1:
            problems.append(f"{len(effects)} {what}s ({', '.join(sorted(effects))}), not one")
    for what, done, undone in (("charge", order.charges, order.refunds), ("reservation", order.reservations, order.releases)):
        for ref, amount in sorted(undone.items()):
            if amount > done.get(ref, 0):
                problems.append(f"{what} {ref} undone by {amount}, more than the {done.get(ref, 0)} it took")
    standing_charges = [ref for ref, amount in order.charges.items() if order.refunds.get(ref, 0) < amount]
    standing_reservations = [ref for ref, qty in order.reservations.items() if order.releases.get(ref, 0) < qty]
    standing_shipments = sorted(order.shipments - order.cancellations)
    if order.outcome == "compensated":
        for what, standing in (
            ("charge", standing_charges),
            ("reservation", standing_reservations),
            ("shipment", standing_shipments),
        ):
            if standing:
                problems.append(f"compensated, but {what} {', '.join(sorted(standing))} still stands")
        if order.notifications:
            problems.append("compensated, but the customer was told it is on its way")
    elif order.outcome == "completed":
        for what, standing in (
            ("charges", standing_charges),
            ("reservations", standing_reservations),
            ("shipments", standing_shipments),
        ):
            if len(standing) != 1:
                problems.append(f"completed with {len(standing)} standing {what}, not one")
    elif order.outcome == "failed":
        problems.append("failed: an operator must act")
    return problems
