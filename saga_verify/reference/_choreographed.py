"""The choreographed order saga: no coordinator, each service reacts to events and publishes its
own. OrderPlaced -> inventory reserves -> StockReserved -> payment charges -> PaymentCaptured ->
shipping creates -> ShipmentCreated -> the order is confirmed -> notification (last, irreversible);
PaymentDeclined -> inventory releases; ShipmentFailed -> payment refunds and inventory releases.

Every consumer checks the envelope before it does anything (a message it cannot read goes to the
dead-letter queue with the reason), deduplicates by event id in the same transaction as its effect,
and publishes through its outbox: the events an effect causes are saved with it and published
after the commit, again by the relay if the broker was unreachable.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from saga_verify import Choreography, Handler, Invariant, Violation
from saga_verify.invariants import choreography_invariants

from ._choreography_events import envelope, invalid

#: What every choreographed execution places.
ORDER = {"order_id": "order-1", "sku": "sku-1", "qty": 2, "amount": 100}
#: Minor units charged per unit of stock.
UNIT_PRICE = 50

Emit = tuple[str, dict[str, Any]]


class ChoreographedService:
    """A service of the choreography: its state, what it committed (what a restart comes back
    to), and the consume-dedupe-commit-publish cycle every handler goes through."""

    name = "service"

    def __init__(self) -> None:
        self.state: dict[str, Any] = {"processed": [], "outbox": [], **self.initial()}
        #: What it committed, as its store keeps it (JSON text).
        self.stored = json.dumps(self.state)
        self.refusing = False

    def initial(self) -> dict[str, Any]:
        return {}

    def commit(self) -> None:
        """Make the working state durable: effect, dedupe record and outbox, in one transaction."""
        self.stored = json.dumps(self.state)

    @property
    def saved(self) -> dict[str, Any]:
        """What it committed (a copy)."""
        return dict(json.loads(self.stored))

    def restart(self) -> None:
        """The process dies and comes back from what it committed."""
        self.state = self.saved
        self.refusing = False

    def refuse_next(self) -> None:
        """The next business decision goes against the order (out of stock, card declined)."""
        self.refusing = True

    def take_refusal(self) -> bool:
        refused, self.refusing = self.refusing, False
        return refused

    # -- the cycle ---------------------------------------------------------------------------
    def consume(self, message: Any, bus: Any, expected: str, effect: Callable[[dict[str, Any]], list[Emit]]) -> None:
        """Check, deduplicate, apply ``effect`` and save its events in one commit, then publish."""
        problem = invalid(message, expected)
        if problem is not None:
            bus.reject(problem)
            return
        if message["id"] in self.state["processed"]:
            self.relay(bus)  # delivered again: done before, but what it caused may still wait
            return
        self.record(effect(message), bus, message)
        self.relay(bus)

    def record(
        self, emits: list[Emit], bus: Any, cause: Mapping[str, Any] | None, correlation_id: str | None = None, *, commit: bool = True
    ) -> None:
        """Save the effect's events in the outbox, mark the cause processed, commit."""
        corr = correlation_id if cause is None else cause["correlation_id"]
        assert corr is not None
        for event_type, data in emits:
            key = f"{corr}:{event_type}"
            self.state["outbox"].append(
                {
                    "event": self.event(
                        event_type, corr=corr, causation=None if cause is None else cause["id"], key=key, data=data, now=bus.now
                    ),
                    "sent": False,
                }
            )
        if cause is not None:
            self.state["processed"].append(cause["id"])
        if commit:
            self.commit()

    def event(self, event_type: str, *, corr: str, causation: str | None, key: str, data: Mapping[str, Any], now: float) -> dict[str, Any]:
        return envelope(event_type, source=self.name, correlation_id=corr, causation_id=causation, key=key, data=data, now=now)

    def relay(self, bus: Any) -> None:
        """Publish what the outbox has not yet published, in order. A publish that fails raises:
        the rest waits for the next relay (a redelivery, or the bus's relay when it is idle)."""
        unsent = [row for row in self.state["outbox"] if not row["sent"]]
        for row in unsent:
            bus.publish(row["event"])
            row["sent"] = True
        if unsent:
            self.commit()  # a crash before it publishes them again: consumers deduplicate


class OrderService(ChoreographedService):
    """Places orders and follows each one from the facts the other services publish."""

    name = "order"

    def initial(self) -> dict[str, Any]:
        return {"orders": {}}

    def place(self, order: Mapping[str, Any], bus: Any) -> None:
        order_id = order["order_id"]
        if order_id in self.state["orders"]:
            self.relay(bus)
            return
        self.state["orders"][order_id] = {"status": "placed", "facts": []}
        self.record([("order.placed", {k: order[k] for k in ("order_id", "sku", "qty", "amount")})], bus, None, order_id)
        self.relay(bus)

    def status(self, order_id: str) -> str:
        found = self.state["orders"].get(order_id)
        return str(found["status"]) if found is not None else "unknown"

    def fact(self, message: dict[str, Any]) -> list[Emit]:
        """Record what happened; the order's status follows from the facts, whatever their order."""
        order_id = message["correlation_id"]
        order = self.state["orders"].get(order_id)
        if order is None:
            raise LookupError(f"no order {order_id!r} here")
        order["facts"].append(message["type"])
        return self.settle(order_id, order)

    def settle(self, order_id: str, order: dict[str, Any]) -> list[Emit]:
        if order["status"] != "placed":
            return []
        facts = set(order["facts"])
        if "shipment.created" in facts:
            order["status"] = "completed"
            return [("order.confirmed", {"order_id": order_id})]
        undone = (
            "stock.unavailable" in facts
            or {"payment.declined", "stock.released"} <= facts
            or {"shipment.failed", "payment.refunded", "stock.released"} <= facts
        )
        if undone:
            order["status"] = "compensated"
            return [("order.compensated", {"order_id": order_id})]
        return []

    def on_stock_unavailable(self, message: Any, bus: Any) -> None:
        self.consume(message, bus, "stock.unavailable", self.fact)

    def on_payment_captured(self, message: Any, bus: Any) -> None:
        self.consume(message, bus, "payment.captured", self.fact)

    def on_payment_declined(self, message: Any, bus: Any) -> None:
        self.consume(message, bus, "payment.declined", self.fact)

    def on_shipment_created(self, message: Any, bus: Any) -> None:
        self.consume(message, bus, "shipment.created", self.fact)

    def on_shipment_failed(self, message: Any, bus: Any) -> None:
        self.consume(message, bus, "shipment.failed", self.fact)

    def on_payment_refunded(self, message: Any, bus: Any) -> None:
        self.consume(message, bus, "payment.refunded", self.fact)

    def on_stock_released(self, message: Any, bus: Any) -> None:
        self.consume(message, bus, "stock.released", self.fact)


class InventoryService(ChoreographedService):
    name = "inventory"

    def initial(self) -> dict[str, Any]:
        return {"reservations": []}

    def held(self, order_id: str) -> list[dict[str, Any]]:
        return [r for r in self.state["reservations"] if r["order_id"] == order_id and not r["released"]]

    def reserve(self, message: Any, bus: Any) -> None:
        self.consume(message, bus, "order.placed", self._reserve)

    def _reserve(self, message: dict[str, Any]) -> list[Emit]:
        data, order_id = message["data"], message["correlation_id"]
        if self.take_refusal():
            return [("stock.unavailable", {"sku": data["sku"]})]
        reservation = {"id": f"res-{order_id}", "order_id": order_id, "qty": data["qty"], "released": False}
        self.state["reservations"].append(reservation)
        return [("stock.reserved", {"reservation_id": reservation["id"], "qty": data["qty"]})]

    def release_declined(self, message: Any, bus: Any) -> None:
        self.consume(message, bus, "payment.declined", self._release)

    def release_unshipped(self, message: Any, bus: Any) -> None:
        self.consume(message, bus, "shipment.failed", self._release)

    def _release(self, message: dict[str, Any]) -> list[Emit]:
        emits: list[Emit] = []
        for reservation in self.held(message["correlation_id"]):
            reservation["released"] = True
            emits.append(("stock.released", {"reservation_id": reservation["id"]}))
        return emits


class PaymentService(ChoreographedService):
    name = "payment"

    def initial(self) -> dict[str, Any]:
        return {"charges": []}

    def captured(self, order_id: str) -> list[dict[str, Any]]:
        return [c for c in self.state["charges"] if c["order_id"] == order_id and not c["refunded"]]

    def charge(self, message: Any, bus: Any) -> None:
        self.consume(message, bus, "stock.reserved", self._charge)

    def _charge(self, message: dict[str, Any]) -> list[Emit]:
        order_id = message["correlation_id"]
        if self.take_refusal():
            return [("payment.declined", {"reason": "card declined"})]
        charge = {"id": f"ch-{order_id}-{len(self.state['charges']) + 1}", "order_id": order_id, "amount": message["data"]["qty"] * UNIT_PRICE, "refunded": False}
        self.state["charges"].append(charge)
        return [("payment.captured", {"charge_id": charge["id"], "amount": charge["amount"]})]

    def refund(self, message: Any, bus: Any) -> None:
        self.consume(message, bus, "shipment.failed", self._refund)

    def _refund(self, message: dict[str, Any]) -> list[Emit]:
        emits: list[Emit] = []
        for charge in self.captured(message["correlation_id"]):
            charge["refunded"] = True
            emits.append(("payment.refunded", {"charge_id": charge["id"]}))
        return emits


class ShippingService(ChoreographedService):
    name = "shipping"

    def initial(self) -> dict[str, Any]:
        return {"shipments": []}

    def create(self, message: Any, bus: Any) -> None:
        self.consume(message, bus, "payment.captured", self._create)

    def _create(self, message: dict[str, Any]) -> list[Emit]:
        order_id = message["correlation_id"]
        if self.take_refusal():
            return [("shipment.failed", {"reason": "no carrier"})]
        shipment = {"id": f"shp-{order_id}", "order_id": order_id}
        self.state["shipments"].append(shipment)
        return [("shipment.created", {"shipment_id": shipment["id"]})]


class NotificationService(ChoreographedService):
    name = "notification"

    def initial(self) -> dict[str, Any]:
        return {"sent": []}

    def send(self, message: Any, bus: Any) -> None:
        self.consume(message, bus, "order.confirmed", self._send)

    def _send(self, message: dict[str, Any]) -> list[Emit]:
        sent = {"id": f"msg-{message['correlation_id']}-{len(self.state['sent']) + 1}", "order_id": message["correlation_id"]}
        self.state["sent"].append(sent)
        return [("notification.sent", {"message_id": sent["id"]})]


def _refuse(service: Any) -> None:
    service.refuse_next()


def _restart(service: Any) -> None:
    service.restart()


#: Who handles which event: the choreography, in one table.
HANDLERS = (
    Handler("inventory", "order.placed", "reserve"),
    Handler("order", "stock.unavailable", "on_stock_unavailable"),
    Handler("payment", "stock.reserved", "charge"),
    Handler("inventory", "payment.declined", "release_declined"),
    Handler("order", "payment.declined", "on_payment_declined"),
    Handler("order", "payment.captured", "on_payment_captured"),
    Handler("shipping", "payment.captured", "create"),
    Handler("payment", "shipment.failed", "refund"),
    Handler("inventory", "shipment.failed", "release_unshipped"),
    Handler("order", "shipment.failed", "on_shipment_failed"),
    Handler("order", "payment.refunded", "on_payment_refunded"),
    Handler("order", "stock.released", "on_stock_released"),
    Handler("order", "shipment.created", "on_shipment_created"),
    Handler("notification", "order.confirmed", "send"),
)
#: The decisions the refuse fault can turn against the order.
REFUSABLE = {("inventory", "reserve"), ("payment", "charge"), ("shipping", "create")}
SERVICES = ("order", "inventory", "payment", "shipping", "notification")


def handlers(
    without: tuple[tuple[str, str], ...] = (),
) -> tuple[Handler, ...]:
    """The choreography's subscriptions (less those in ``without``, as (service, event type)), each
    refusable where the service makes a business decision."""
    return tuple(
        Handler(h.service, h.on, h.method, refuse=_refuse if (h.service, h.method) in REFUSABLE else None)
        for h in HANDLERS
        if (h.service, h.on) not in without
    )


def outcome(services: Mapping[str, Any], correlation_id: str) -> str:
    """How the order stands at the order service."""
    return str(services["order"].status(correlation_id))


def choreography(
    name: str,
    ref: str,
    classes: Mapping[str, type[ChoreographedService]] | None = None,
    invariants: Any = None,
    without: tuple[tuple[str, str], ...] = (),
    max_attempts: int | None = 5,
) -> Choreography:
    """The choreographed order saga (with some services' classes replaced, for a broken variant)."""
    chosen: dict[str, type[ChoreographedService]] = {
        "order": OrderService,
        "inventory": InventoryService,
        "payment": PaymentService,
        "shipping": ShippingService,
        "notification": NotificationService,
    }
    chosen.update(classes or {})

    def services() -> dict[str, object]:
        return {name: cls() for name, cls in chosen.items()}

    return Choreography(
        name=name,
        services=services,
        handlers=handlers(without),
        start="order.place",
        outcome=outcome,
        input=ORDER,
        restart=dict.fromkeys(SERVICES, _restart),
        relay="relay",
        max_attempts=max_attempts,
        invariants=invariants if invariants is not None else order_invariants(),
        ref=ref,
    )


# -- what the order saga promises, read from the services --------------------------------------
def _effects(execution: Any) -> dict[str, list[dict[str, Any]]]:
    services, corr = execution.participants, execution.correlation_id
    return {
        "reservation": [r for r in services["inventory"].saved["reservations"] if r["order_id"] == corr],
        "charge": [c for c in services["payment"].saved["charges"] if c["order_id"] == corr],
        "shipment": [s for s in services["shipping"].saved["shipments"] if s["order_id"] == corr],
        "notification": [n for n in services["notification"].saved["sent"] if n["order_id"] == corr],
    }


def _no_double_effect(execution: Any) -> list[Violation]:
    return [
        Violation(f"the order has {len(rows)} {what}s, not one: {', '.join(r['id'] for r in rows)}")
        for what, rows in _effects(execution).items()
        if len(rows) > 1
    ]


def _services_agree(execution: Any) -> list[Violation]:
    """At quiescence, what the order service says and what the others did match."""
    if execution.halted or (execution.bus is not None and any(d.rejected for d in execution.bus.dead_letters)):
        return []  # not quiet, or a message nobody could read waits for a person: the saga is parked
    effects = _effects(execution)
    held = {
        "reservation": [r for r in effects["reservation"] if not r["released"]],
        "charge": [c for c in effects["charge"] if not c["refunded"]],
        "shipment": effects["shipment"],
        "notification": effects["notification"],
    }
    status = execution.participants["order"].status(execution.correlation_id)
    if status == "completed":
        missing = [what for what, rows in held.items() if not rows]
        return [Violation(f"the order service confirmed the order, but there is no {what} for it") for what in missing]
    return [
        Violation(f"the order service says {status!r}, but {what} {', '.join(r['id'] for r in rows)} is still in effect")
        for what, rows in held.items()
        if rows
    ]


def _outbox_published(execution: Any) -> list[Violation]:
    if execution.halted:
        return []
    return [
        Violation(f"{name} committed {row['event']['type']} {row['event']['id']} and never published it")
        for name, service in execution.participants.items()
        for row in service.saved["outbox"]
        if not row["sent"]
    ]


def outbox_published_invariant(what: str) -> Invariant:
    """Every ``what`` (event, message) a service committed to its outbox was published: the outbox's
    promise, for any service built on `ChoreographedService`."""
    return Invariant("outbox_published", _outbox_published, f"every {what} a service committed to its outbox was published")


no_double_effect = Invariant("no_double_effect", _no_double_effect, "one reservation, one charge, one shipment, one notification per order at most")
services_agree = Invariant(
    "services_agree",
    _services_agree,
    "when the bus is quiet the order's status and the services' effects agree: confirmed with every effect, otherwise none left in effect",
)
outbox_published = outbox_published_invariant("event")


def order_invariants() -> tuple[Invariant, ...]:
    """What the choreographed order saga must hold: every choreography's promises and the order's."""
    return (*choreography_invariants(), no_double_effect, services_agree, outbox_published)
