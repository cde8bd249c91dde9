"""Broken variants of the choreographed order saga, one bug each: the classic ways an event-driven
saga goes wrong on an at-least-once bus. The search must find every one."""

from __future__ import annotations

from typing import Any

from saga_verify import Choreography

from ._choreographed import (
    Emit,
    InventoryService,
    OrderService,
    PaymentService,
    ShippingService,
    choreography,
)
from ._choreography_events import invalid

_HERE = __name__.rpartition(".")[0]


class NonIdempotentPayment(PaymentService):
    """The payment consumer does not deduplicate by event id: a StockReserved delivered twice charges the customer twice."""

    def charge(self, message: Any, bus: Any) -> None:
        problem = invalid(message, "stock.reserved")
        if problem is not None:
            bus.reject(problem)
            return
        self.record(self._charge(message), bus, message)
        self.relay(bus)


class OrderAssumingOrder(OrderService):
    """The order service assumes PaymentCaptured arrives before ShipmentCreated, and fails an order whose events come the other way round."""

    def on_shipment_created(self, message: Any, bus: Any) -> None:
        self.consume(message, bus, "shipment.created", self._shipped)

    def _shipped(self, message: dict[str, Any]) -> list[Emit]:
        order = self.state["orders"].get(message["correlation_id"])
        if order is not None and "payment.captured" not in order["facts"]:
            order["status"] = "failed"  # "cannot happen": shipped before paid
            return []
        return self.fact(message)


class DualWriteOrder(OrderService):
    """The order service publishes OrderPlaced straight to the broker and then commits the order (a dual write): a crash in between leaves an event for an order that does not exist."""

    def place(self, order: Any, bus: Any) -> None:
        order_id = order["order_id"]
        if order_id in self.state["orders"]:
            return
        self.state["orders"][order_id] = {"status": "placed", "facts": []}
        data = {k: order[k] for k in ("order_id", "sku", "qty", "amount")}
        key = f"{order_id}:order.placed"
        bus.publish(self.event("order.placed", corr=order_id, causation=None, key=key, data=data, now=bus.now))
        self.commit()


class AckBeforeCommitInventory(InventoryService):
    """The inventory consumer acknowledges OrderPlaced as it arrives and writes the reservation with its next batch: a crash in between loses a message the broker will never deliver again."""

    def reserve(self, message: Any, bus: Any) -> None:
        bus.ack()
        problem = invalid(message, "order.placed")
        if problem is not None or message["id"] in self.state["processed"]:
            return
        self.record(self._reserve(message), bus, message, commit=False)  # the batch commits it

    def relay(self, bus: Any) -> None:
        self.commit()  # the batch: what was acknowledged since the last one
        super().relay(bus)


class CorrelationDroppingShipping(ShippingService):
    """The shipping consumer answers a redelivered PaymentCaptured with a ShipmentCreated rebuilt from its records, without the saga's correlation id."""

    def create(self, message: Any, bus: Any) -> None:
        if invalid(message, "payment.captured") is None and message["id"] in self.state["processed"]:
            shipment = next(s for s in self.state["shipments"] if s["order_id"] == message["correlation_id"])
            event = self.event(
                "shipment.created",
                corr=message["correlation_id"],
                causation=message["id"],
                key=f"{message['correlation_id']}:shipment.created",
                data={"shipment_id": shipment["id"]},
                now=bus.now,
            )
            del event["correlation_id"]  # rebuilt from the shipment, which does not know its saga
            bus.publish(event)
            return
        super().create(message, bus)


class RetryingPayment(PaymentService):
    """Payment's queue has no dead-letter path: a message its consumer cannot read is redelivered for ever, and the saga behind it never moves again."""

    def consume(self, message: Any, bus: Any, expected: str, effect: Any) -> None:
        problem = invalid(message, expected)
        if problem is not None:
            raise ValueError(problem)  # left to the queue's redelivery, which has no bound
        super().consume(message, bus, expected, effect)


class MissingCompensationInventory(InventoryService):
    """Inventory has no handler for ShipmentFailed: when shipping fails the payment is refunded, and the stock stays reserved for ever."""


def _variant(name: str, **kwargs: Any) -> Choreography:
    return choreography(name, f"{_HERE}:{name}", **kwargs)


correct = choreography("choreographed_order", f"{_HERE}:choreographed_order_saga")
non_idempotent_consumer = _variant("non_idempotent_consumer", classes={"payment": NonIdempotentPayment})
order_assuming_consumer = _variant("order_assuming_consumer", classes={"order": OrderAssumingOrder})
dual_write_publish = _variant("dual_write_publish", classes={"order": DualWriteOrder})
missing_compensation_handler = _variant(
    "missing_compensation_handler", classes={"inventory": MissingCompensationInventory}, without=(("inventory", "shipment.failed"),)
)
poison_blocks_queue = _variant("poison_blocks_queue", classes={"payment": RetryingPayment}, max_attempts=None)
correlation_dropped = _variant("correlation_dropped", classes={"shipping": CorrelationDroppingShipping})
ack_before_commit = _variant("ack_before_commit", classes={"inventory": AckBeforeCommitInventory})

#: The broken variants, each with the class that carries its bug.
BROKEN = (
    (non_idempotent_consumer, NonIdempotentPayment),
    (order_assuming_consumer, OrderAssumingOrder),
    (dual_write_publish, DualWriteOrder),
    (missing_compensation_handler, MissingCompensationInventory),
    (poison_blocks_queue, RetryingPayment),
    (correlation_dropped, CorrelationDroppingShipping),
    (ack_before_commit, AckBeforeCommitInventory),
)
