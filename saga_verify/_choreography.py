"""A choreography: a saga coordinated by events, declared as services' handlers subscribed to event
types; it is run as a `Saga` whose deliveries are messages on a bus the harness owns."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from ._saga import Saga, Step
from .errors import SagaDefinitionError

#: The operation of every service of a choreography through which it publishes: each publish is
#: a delivery point (``inventory.publish#1``) where the plan may lose, duplicate or hold the
#: message, or crash the publisher right after it went out.
PUBLISH = "publish"
_NAME_RE = re.compile(r"^[A-Za-z_][\w-]*$")
_TYPE_RE = re.compile(r"^[A-Za-z_][\w-]*(\.[A-Za-z_][\w-]*)*$")
_CALL_RE = re.compile(r"^([A-Za-z_][\w-]*)\.([A-Za-z_][\w-]*)$")


@dataclass(frozen=True)
class Handler:
    """One subscription: when an event of type ``on`` is delivered, the bus calls
    ``<service>.<method>(envelope, bus=...)``. Each call is a delivery point
    (``payment.charge#2``: the second delivery to that handler, a redelivery included)."""

    service: str
    """The service that handles it (``"payment"``)."""
    on: str
    """The event type it subscribes to (``"stock.reserved"``)."""
    method: str
    """The service's method the bus calls (``"charge"``)."""
    refuse: Callable[[Any], None] | None = None
    """How to make the service refuse the next call for a business reason (a declined card),
    called with the service object; enables the refuse fault at this handler."""

    def __post_init__(self) -> None:
        for label, value in (("service", self.service), ("method", self.method)):
            if not isinstance(value, str) or not _NAME_RE.match(value):
                raise SagaDefinitionError(f"Handler {label} must be a plain name like 'payment', got {value!r}")
        if not isinstance(self.on, str) or not _TYPE_RE.match(self.on):
            raise SagaDefinitionError(f"Handler on= must be an event type like 'stock.reserved', got {self.on!r}")
        if self.method == PUBLISH:
            raise SagaDefinitionError(
                f"Handler {self.service}.{self.method}: {PUBLISH!r} is the bus's own operation; name the handler apart"
            )
        if self.refuse is not None and not callable(self.refuse):
            raise SagaDefinitionError(f"Handler refuse= must be callable, got {self.refuse!r}")


@dataclass(frozen=True, eq=False)
class Choreography:
    """Services that coordinate a saga by events. ``start`` (``"order.place"``) begins a saga
    instance: the bus calls it with ``(input, bus=...)``; from then on, each published event is
    delivered at least once to every handler subscribed to its type, in publish order unless the
    plan says otherwise. A handler publishes with ``bus.publish(envelope)``, may give up on a
    message with ``bus.reject(reason)`` (it goes to the dead-letter queue) and is acknowledged when
    it returns; a handler that raises is redelivered, up to ``max_attempts`` deliveries, then the
    message is dead-lettered. ``saga`` is the `Saga` that searches, plans and reports take."""

    name: str
    """Shown in reports and used to key the example database."""
    services: Callable[[], Mapping[str, object]]
    """Builds fresh services for one execution: name -> object with the handlers' methods."""
    handlers: Sequence[Handler]
    """Who handles which event type."""
    start: str
    """``"service.method"`` that begins the saga instance, called with ``(input, bus=...)``."""
    outcome: Callable[[Mapping[str, object], str], object]
    """How the saga instance stands, read from the services when the bus is quiet:
    ``outcome(services, correlation_id)`` -> ``"completed"``, ``"compensated"``, ``"failed"``,
    or anything else for a saga that has not ended."""
    input: Any = None
    """What ``start`` receives."""
    correlation_id: str | None = None
    """The saga instance; defaults to ``input['order_id']`` when there is one, else the name."""
    restart: Mapping[str, Callable[[Any], None]] = field(default_factory=dict)
    """Per service, how to kill it and bring it back from what it keeps (its store): enables the
    crash fault at its handlers and its publishes."""
    relay: str | None = None
    """A method every service has, ``relay(bus=...)``, that publishes what its outbox still holds:
    the bus calls it on each service when nothing else is pending. None: no relay."""
    max_attempts: int | None = 5
    """Deliveries of one message to one handler before it is dead-lettered; None: no bound (a
    message that never succeeds is redelivered for ever)."""
    redelivery_delay: float = 5.0
    """Virtual seconds before a message that was not acknowledged is delivered again."""
    invariants: Sequence[Any] | None = None
    """What must hold; None: `saga_verify.invariants.choreography_invariants`."""
    max_deliveries: int = 400
    """An execution with more deliveries than this has not terminated."""
    ref: str | None = None
    """Where its `saga` can be imported from, ``"package.module:attribute"``."""
    broker: Callable[[Any, Choreography], Any] | None = None
    """Opens the message broker of one execution, ``broker(world, choreography)`` -> a
    ``_world._bus.MessageBroker`` (an adapter of a real broker); None: the simulated bus."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise SagaDefinitionError(f"Choreography name must be non-empty text, got {self.name!r}")
        object.__setattr__(self, "handlers", tuple(self.handlers))
        if not self.handlers or not all(isinstance(h, Handler) for h in self.handlers):
            raise SagaDefinitionError(
                f"choreography {self.name!r}: handlers must be a non-empty list of Handler values"
            )
        if not isinstance(self.start, str) or not _CALL_RE.match(self.start):
            raise SagaDefinitionError(
                f"choreography {self.name!r}: start= must read 'service.method', got {self.start!r}"
            )
        if self.broker is not None and not callable(self.broker):
            raise SagaDefinitionError(f"choreography {self.name!r}: broker= must be callable (it opens the broker) or None")
        if not callable(self.services) or not callable(self.outcome):
            raise SagaDefinitionError(f"choreography {self.name!r}: services= and outcome= must be callable")
        seen: dict[tuple[str, str], str] = {}
        for h in self.handlers:
            if seen.setdefault((h.service, h.method), h.on) != h.on:
                raise SagaDefinitionError(
                    f"choreography {self.name!r}: {h.service}.{h.method} handles both {seen[(h.service, h.method)]!r} and "
                    f"{h.on!r}; give each subscription a method of its own"
                )
        if not isinstance(self.restart, Mapping) or not all(callable(v) for v in self.restart.values()):
            raise SagaDefinitionError(f"choreography {self.name!r}: restart= maps service names to callables")
        if self.relay is not None and (not isinstance(self.relay, str) or not _NAME_RE.match(self.relay)):
            raise SagaDefinitionError(
                f"choreography {self.name!r}: relay= must be a method name or None, got {self.relay!r}"
            )
        attempts = self.max_attempts
        if attempts is not None and (isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1):
            raise SagaDefinitionError(
                f"choreography {self.name!r}: max_attempts must be a whole number >= 1 or None, got {attempts!r}"
            )
        delay = self.redelivery_delay
        if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not math.isfinite(delay) or delay <= 0:
            raise SagaDefinitionError(
                f"choreography {self.name!r}: redelivery_delay must be a positive number of seconds, got {delay!r}"
            )

    @property
    def start_call(self) -> tuple[str, str]:
        """``start`` as (service, method)."""
        service, method = self.start.split(".")
        return service, method

    @cached_property
    def service_names(self) -> tuple[str, ...]:
        start = self.start_call[0]
        return tuple(dict.fromkeys([start, *(h.service for h in self.handlers)]))

    def handles(self, service: str, method: str) -> bool:
        """Whether ``service.method`` is a handler (where messages are delivered)."""
        return any(h.service == service and h.method == method for h in self.handlers)

    def subscribers(self, event_type: object) -> tuple[Handler, ...]:
        """The handlers of ``event_type``, in declaration order."""
        return tuple(h for h in self.handlers if h.on == event_type)

    @cached_property
    def saga(self) -> Saga:
        """The saga a search, a plan or a report takes: one step per handler, per service's
        publish and relay, and the start, each a delivery point."""
        steps: list[Step] = []
        added: set[tuple[str, str]] = set()

        def add(service: str, method: str, refuse: Callable[[Any], None] | None = None) -> None:
            if (service, method) in added:
                return
            added.add((service, method))
            steps.append(Step(service, method, refuse=refuse, restart=self.restart.get(service), depends_on=()))

        add(*self.start_call)
        for h in self.handlers:
            add(h.service, h.method, h.refuse)
        for service in self.service_names:
            add(service, PUBLISH)
            if self.relay is not None:
                add(service, self.relay)
        return Saga(
            name=self.name,
            steps=steps,
            participants=self.services,
            run=_run_by_the_bus,
            input=self.input,
            correlation_id=self.correlation_id,
            invariants=self.invariants,
            max_deliveries=self.max_deliveries,
            ref=self.ref,
            choreography=self,
        )


def _run_by_the_bus(services: Any, input: Any) -> Any:
    """A choreography has no coordinator: its executions are driven by the bus (`_world._bus`)."""
    raise SagaDefinitionError(
        "a choreography runs through saga_verify (explore, verify, run_plan), which drives its bus"
    )
