"""Who reads which event of the choreographed order saga from whom, and the events its services
really publish, for the message pacts between them (``contracts/pacts/choreography/``).

A pact's consumer is a service with a handler subscribed to an event type (`HANDLERS`), its
provider the service that publishes that type. `message_producer` makes the message a pact
describes the way the provider does: it runs the choreography on the simulated bus (happy path,
or the refusal that leads to the event) and answers the envelope the provider published, taken
off the bus, which its outbox relay put there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from saga_verify import Choreography, FaultPlan, run_plan
from saga_verify.faults import DeliveryPoint, Refuse

from ._choreographed import HANDLERS, ChoreographedService, choreography

#: Where the reference choreography is found (a replay line's target).
_REF = "saga_verify.reference:choreographed_order_saga"
#: The executions that, between them, publish every event type: the happy path and each refusal.
SCENARIOS: dict[str, tuple[str, ...]] = {
    "the order completes": (),
    "inventory has no stock": ("inventory.reserve#1",),
    "payment declines the card": ("payment.charge#1",),
    "shipping has no carrier": ("shipping.create#1",),
}


def event_description(event_type: str) -> str:
    """A message interaction's description: ``"a stock.reserved event"``."""
    return f"a {event_type} event"


def event_type_of(description: str) -> str:
    """The event type a description names (the inverse of `event_description`)."""
    if not (description.startswith("a ") and description.endswith(" event")):
        raise LookupError(f"{description!r} does not describe an event (expected 'a <type> event')")
    return description[2:-6]


def published(saga: Choreography | None = None) -> dict[str, tuple[str, dict[str, Any]]]:
    """Per event type, who published it and its first envelope, over every scenario of ``saga``
    (the reference choreography by default), in the order they were published."""
    chosen = saga if saga is not None else choreography("choreographed_order_saga", ref=_REF)
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for refusals in SCENARIOS.values():
        plan = FaultPlan(tuple(Refuse(DeliveryPoint.parse(point)) for point in refusals))
        execution = run_plan(chosen.saga, plan)
        assert execution.bus is not None
        for message in execution.bus.messages:
            found.setdefault(message.type, (message.source, message.envelope))
    return found


def producers() -> dict[str, str]:
    """Event type -> the service that publishes it, as the reference choreography runs."""
    return {event_type: source for event_type, (source, _) in published().items()}


def consumed() -> dict[tuple[str, str], list[str]]:
    """(consumer, provider) -> the event types the consumer has a handler for, sorted: one message
    pact each. Every subscribed type has a publisher, or the choreography has a dead handler."""
    made_by = producers()
    pairs: dict[tuple[str, str], set[str]] = {}
    for handler in HANDLERS:
        if handler.on not in made_by:
            raise LookupError(f"{handler.service}.{handler.method} reads {handler.on}, which no scenario publishes")
        pairs.setdefault((handler.service, made_by[handler.on]), set()).add(handler.on)
    return {pair: sorted(types) for pair, types in sorted(pairs.items())}


def message_producer(
    provider: str, classes: Mapping[str, type[ChoreographedService]] | None = None
) -> Callable[[str], dict[str, Any]]:
    """For provider verification: the message ``provider`` publishes for an interaction described
    as ``"a <type> event"``, made by running the choreography (with ``classes`` replacing some
    services, to check a changed producer). Raises LookupError when it publishes no such event."""
    saga = choreography("choreographed_order_saga", ref=_REF, classes=classes)
    made: dict[str, tuple[str, dict[str, Any]]] = {}

    def produce(description: str) -> dict[str, Any]:
        event_type = event_type_of(description)
        if not made:
            made.update(published(saga))  # the scenarios run once per verification
        source, message = made.get(event_type, (None, None))
        if source != provider or message is None:
            raise LookupError(f"{provider} publishes no {event_type} event (published by {source or 'nobody'})")
        return message

    return produce
