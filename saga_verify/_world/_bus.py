"""The message bus of a choreography: where published events wait, who gets them next, what is
acknowledged, redelivered and dead-lettered; and the loop that drives one execution through it.

The same bus carries commands and replies for an orchestrator that talks to its participants by
messaging: a command is an envelope with a ``reply_to`` (the type its reply is published as), a
reply names the command as its cause, and a service may defer a message to itself (a timeout).

The seam for a broker is `MessageBroker` (publish, receive, ack, nack, dead-letter); `SimBus` is
the in-memory one, on the execution's virtual clock. Faults are not the broker's business: each
delivery to a handler and each publish goes through the world's transport as a call
(``payment.charge#2``, ``inventory.publish#1``), so plans lose, duplicate, hold and crash
messages as they do calls, and searches, shrinking and replays work unchanged.
"""

from __future__ import annotations

import heapq
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from .._choreography import PUBLISH, Choreography, Handler
from ..errors import SagaDefinitionError

#: The world (`_world.World`), named loosely: this module sits below the world that drives it.
World = Any


@dataclass(frozen=True)
class Message:
    """One published event: the envelope as its publisher gave it."""

    seq: int
    """Publish order within the execution, from 0."""
    source: str
    """The service that published it."""
    envelope: Any
    """What was published (a mapping in the canonical envelope, or whatever a broken publisher sent)."""
    time: float
    """Virtual seconds when it was published."""
    role: str = "event"
    """``event``; ``command`` (its envelope names a ``reply_to``); ``reply`` (its type is the
    ``reply_to`` of the command it names as its cause); ``deferred`` (not delivered before ``due``:
    a timeout a service set itself)."""
    due: float | None = None
    """Virtual seconds from which it may be delivered, when later than ``time`` (deferred)."""

    @property
    def type(self) -> str:
        """The envelope's ``type``, or ``"?"`` when it has none."""
        value = self.envelope.get("type") if isinstance(self.envelope, Mapping) else None
        return value if isinstance(value, str) else "?"

    @property
    def id(self) -> str:
        """The envelope's ``id``, or ``"?"`` when it has none."""
        value = self.envelope.get("id") if isinstance(self.envelope, Mapping) else None
        return value if isinstance(value, str) else "?"


@dataclass
class Delivery:
    """One message on its way to one handler, until it is acknowledged or dead-lettered."""

    message: Message
    handler: Handler
    due: float
    """Virtual seconds from which it may be delivered (later after a nack)."""
    attempts: int = 0
    """How many times it was delivered so far."""
    state: str = "pending"
    """``pending``, ``acked`` or ``dead-lettered``."""
    reason: str | None = None
    """Why it was last refused or dead-lettered."""
    faulted: int = 0
    """How many of its deliveries failed at a fault the plan injected there (not of its own)."""
    body: Any = None
    """What it carries for this handler when that is not the message as published (mangled on
    the way, `corrupted`); None otherwise."""

    def __str__(self) -> str:
        role = "" if self.message.role == "event" else f"{self.message.role} "
        return f"{role}{self.message.type} {self.message.id} -> {self.handler.service}.{self.handler.method}"


@dataclass(frozen=True)
class DeadLetter:
    """A message a handler never processed, parked for a person, with the reason."""

    message: Message
    handler: Handler
    reason: str
    attempts: int
    poison: bool
    """True when the message itself is the trouble: its handler rejected it (``bus.reject``), or
    raised on it at a delivery the plan did not disturb. False when only injected faults (lost
    deliveries, crashes) used up its attempts: a healthy message, dead-lettered."""
    rejected: bool = False
    """True when its handler rejected it on reading (``bus.reject``: malformed, unknown type or
    version, a payload that fails its schema)."""


class MessageBroker(Protocol):
    """What the harness needs of a message broker: the simulated bus is one; an adapter of a real
    broker (its consumers' acks and dead-letter queue) is another."""

    messages: list[Message]
    """Every message published so far, in publish order."""

    def publish(self, message: Message, handlers: tuple[Handler, ...]) -> None:
        """Accept ``message`` for each of ``handlers`` (its subscribers)."""

    def receive(self) -> Delivery | None:
        """The next delivery due (FIFO among those due at once), or None when nothing is pending."""

    def ack(self, delivery: Delivery) -> None:
        """The handler is done with it: never deliver it again."""

    def nack(self, delivery: Delivery, reason: str) -> None:
        """The handler did not finish: deliver it again later, or dead-letter it once it has had
        its attempts."""

    def dead_letter(self, delivery: Delivery, reason: str, poison: bool, rejected: bool = False) -> None:
        """Park it in the dead-letter queue, with the reason."""

    def record(self) -> BusRecord:
        """What the broker did in this execution (read when it is over)."""


@dataclass(frozen=True)
class BusRecord:
    """What the bus did in one execution: what invariants and timelines read."""

    messages: tuple[Message, ...]
    deliveries: tuple[Delivery, ...]
    dead_letters: tuple[DeadLetter, ...]


class SimBus:
    """The in-memory broker of a simulated execution, on its virtual clock: at least once, FIFO by
    due time, a redelivery ``redelivery_delay`` seconds after a nack, dead-lettered after
    ``max_attempts`` deliveries."""

    def __init__(self, world: World, choreography: Choreography) -> None:
        self.world = world
        self.choreography = choreography
        self.messages: list[Message] = []
        self.deliveries: list[Delivery] = []
        self.dead_letters: list[DeadLetter] = []
        self._queue: list[tuple[float, int, Delivery]] = []
        self._order = 0

    def _push(self, delivery: Delivery) -> None:
        heapq.heappush(self._queue, (delivery.due, self._order, delivery))
        self._order += 1

    def publish(self, message: Message, handlers: tuple[Handler, ...]) -> None:
        self.messages.append(message)
        due = message.time if message.due is None else message.due
        for handler in handlers:
            delivery = Delivery(message, handler, due)
            self.deliveries.append(delivery)
            self._push(delivery)

    def receive(self) -> Delivery | None:
        pending = self.world.pending
        while self._queue:
            due, _, delivery = self._queue[0]
            if delivery.state != "pending":
                heapq.heappop(self._queue)
                continue
            if due > self.world.clock._now and pending and pending[0][0] < due:
                # What the network holds lands before this is due (a deferred message, a
                # redelivery): nothing now; the driver lands it first.
                return None
            heapq.heappop(self._queue)
            return delivery
        return None

    def ack(self, delivery: Delivery) -> None:
        if delivery.state == "pending":
            delivery.state = "acked"

    def nack(self, delivery: Delivery, reason: str) -> None:
        if refused_for_good(self, self.choreography, delivery, reason):
            return
        delivery.due = self.world.clock._now + self.choreography.redelivery_delay
        self._push(delivery)

    def dead_letter(self, delivery: Delivery, reason: str, poison: bool, rejected: bool = False) -> None:
        if delivery.state != "pending":
            return
        delivery.state = "dead-lettered"
        delivery.reason = reason
        self.dead_letters.append(DeadLetter(delivery.message, delivery.handler, reason, delivery.attempts, poison, rejected))
        self.world.note(self.world.clock._now, "dead-lettered", f"{delivery} dead-lettered: {reason}")

    def record(self) -> BusRecord:
        return BusRecord(tuple(self.messages), tuple(self.deliveries), tuple(self.dead_letters))


def refused_for_good(broker: MessageBroker, choreography: Choreography, delivery: Delivery, reason: str) -> bool:
    """The first half of every broker's nack: note why ``delivery`` was refused and, once it has
    had the choreography's ``max_attempts`` deliveries, dead-letter it. True when nothing is left
    to do (it was not pending, or it was dead-lettered); False when it is to be delivered again."""
    if delivery.state != "pending":
        return True
    delivery.reason = reason
    limit = choreography.max_attempts
    if limit is not None and delivery.attempts >= limit:
        poison = delivery.faulted < delivery.attempts
        broker.dead_letter(delivery, f"not processed after {delivery.attempts} deliveries; last: {reason}", poison=poison)
        return True
    return False


class BusHandle:
    """What a handler (or the start) sees as ``bus``: publish as its service, and settle the
    message it was given."""

    __slots__ = ("_delivery", "_service", "_world", "acked", "rejected")

    def __init__(self, world: World, service: str, delivery: Delivery | None) -> None:
        self._world = world
        self._service = service
        self._delivery = delivery
        #: Whether the handler acknowledged the message itself before returning.
        self.acked = False
        #: Why the handler rejected the message (it goes to the dead-letter queue), if it did.
        self.rejected: str | None = None

    @property
    def service(self) -> str:
        """The service this handle publishes as."""
        return self._service

    @property
    def message(self) -> Message | None:
        """The message being handled (None for the start)."""
        return self._delivery.message if self._delivery is not None else None

    @property
    def attempt(self) -> int:
        """Which delivery of the message this is (1 for the first; 0 for the start)."""
        return self._delivery.attempts if self._delivery is not None else 0

    @property
    def now(self) -> float:
        """Virtual seconds since the start."""
        return float(self._world.clock._now)

    def publish(self, envelope: Any, after: float = 0.0) -> None:
        """Publish ``envelope`` as this service, through the transport (a delivery point); with
        ``after``, deliver it no sooner than that many virtual seconds from now (a deferred
        message: the timeout an orchestrator sets on the command it sent)."""
        if isinstance(after, bool) or not isinstance(after, (int, float)) or not math.isfinite(after) or after < 0:
            raise ValueError(f"publish after= must be a number of seconds >= 0, got {after!r}")
        if after:
            self._world.endpoints[(self._service, PUBLISH)](envelope, after=float(after))
        else:
            self._world.endpoints[(self._service, PUBLISH)](envelope)

    def ack(self) -> None:
        """Acknowledge the message now, before returning (from now on it is never redelivered,
        whatever happens to the handler)."""
        if self._delivery is not None and not self.acked:
            self.acked = True
            broker = self._world.bus
            assert broker is not None
            broker.ack(self._delivery)
            self._world.note(self._world.clock._now, "acked", f"{self._delivery} acknowledged by the handler")

    def reject(self, reason: str) -> None:
        """Refuse the message for good (a malformed envelope, an unknown type or version, a
        payload that fails its schema): it goes to the dead-letter queue with ``reason``."""
        self.rejected = str(reason)

    def __repr__(self) -> str:
        return f"<bus of {self._service}>"


def publisher(world: World, service: str) -> Any:
    """The function behind ``<service>.publish``: hands the envelope to the broker."""

    def publish(envelope: Any, after: float = 0.0) -> str:
        broker = world.bus
        choreography = world.saga.choreography
        assert broker is not None
        assert choreography is not None
        now = world.clock._now
        due = now + after if after else None
        message = Message(len(broker.messages), service, envelope, now, _role(broker.messages, envelope, due), due)
        handlers = choreography.subscribers(message.type)
        broker.publish(message, handlers)
        to = ", ".join(f"{h.service}.{h.method}" for h in handlers) or "no subscriber"
        if message.role == "command":
            text = f"{service} sent command {message.type} {message.id} (to {to}; reply as {envelope['reply_to']})"
        elif message.role == "reply":
            text = f"{service} replied {message.type} {message.id} to command {envelope['causation_id']} (to {to})"
        elif message.role == "deferred":
            text = f"{service} deferred {message.type} {message.id} until t={due:.3f} (to {to})"
        else:
            text = f"{service} published {message.type} {message.id} (to {to})"
        world.note(now, _NOTE[message.role], text)
        return f"{_NOTE[message.role]} {message.type} {message.id}"

    return publish


#: The timeline's moment kind for a message published in each role.
_NOTE = {"event": "published", "command": "sent", "reply": "replied", "deferred": "deferred"}


def _role(earlier: list[Message], envelope: Any, due: float | None) -> str:
    """What a new message is on the bus: a deferred one, a command, a reply to an earlier
    command, or an event."""
    if due is not None:
        return "deferred"
    if not isinstance(envelope, Mapping):
        return "event"
    if isinstance(envelope.get("reply_to"), str):
        return "command"
    cause = envelope.get("causation_id")
    if isinstance(cause, str):
        for message in reversed(earlier):
            if message.id == cause and message.role == "command":
                if message.envelope.get("reply_to") == envelope.get("type"):
                    return "reply"
                break
    return "event"


def drive(world: World) -> Any:
    """Run one choreographed execution: the start, then every delivery until nothing is pending
    (the relay emptied every outbox); returns the instance's outcome read from the services."""
    choreography = world.saga.choreography
    broker = world.bus
    assert choreography is not None
    assert broker is not None
    clock = world.clock
    service, method = choreography.start_call
    awaited = sorted(f"{ep.participant}.{ep.operation}" for ep in world.endpoints.values() if ep.is_async)
    if awaited:
        raise world.fail(
            SagaDefinitionError(
                f"choreography {choreography.name!r}: {', '.join(awaited)} {'is' if len(awaited) == 1 else 'are'} 'async def'; "
                "the bus calls handlers, the start and the relay as plain methods"
            )
        )
    try:
        world.endpoints[(service, method)](world.saga.input, bus=BusHandle(world, service, None))
    except Exception as exc:
        # The client that began the saga saw an error and gave up; what was done stays done.
        world.note(clock._now, "start-failed", f"the start {service}.{method} failed: {type(exc).__name__}: {exc}")
    while world.halted is None:
        delivery = broker.receive()
        if delivery is None:
            if world.pending:
                # What the network still holds lands now: it may publish more.
                clock._now = max(clock._now, world.pending[0][0])
                world.drive(world.flush_due())
                continue
            if choreography.relay is None:
                break
            before = len(broker.messages)
            failed = _relay(world, choreography.relay)
            if len(broker.messages) == before and not failed:
                break
            if failed:
                # A relay that could not publish tries again later, for as long as the execution
                # may run: an outbox is emptied eventually, or the run is stopped.
                clock._now += choreography.redelivery_delay
            continue
        if delivery.due > clock._now:
            clock._now = delivery.due
        _deliver(world, broker, delivery)
    return choreography.outcome(world.participants, world.correlation_id)


def _deliver(world: World, broker: MessageBroker, delivery: Delivery) -> None:
    delivery.attempts += 1
    handler = delivery.handler
    what = "redelivered" if delivery.attempts > 1 else "delivered"
    world.note(world.clock._now, what, f"{delivery} {what} (delivery {delivery.attempts})")
    handle = BusHandle(world, handler.service, delivery)
    injected = len(world.injected)
    try:
        body = delivery.message.envelope if delivery.body is None else delivery.body
        world.endpoints[(handler.service, handler.method)](body, bus=handle)
    except Exception as exc:
        if any(f.at.participant == handler.service and f.at.operation == handler.method for f in world.injected[injected:]):
            delivery.faulted += 1
        if handle.rejected is not None:
            broker.dead_letter(delivery, handle.rejected, poison=True, rejected=True)
        elif not handle.acked:
            broker.nack(delivery, f"{type(exc).__name__}: {exc}")
        return
    if handle.rejected is not None:
        broker.dead_letter(delivery, handle.rejected, poison=True, rejected=True)
    elif not handle.acked:
        broker.ack(delivery)


def _relay(world: World, relay: str) -> bool:
    """Ask every service to publish what its outbox holds; True when a relay call failed."""
    choreography = world.saga.choreography
    assert choreography is not None
    failed = False
    for service in choreography.service_names:
        try:
            world.endpoints[(service, relay)](bus=BusHandle(world, service, None))
        except Exception:
            failed = True
    return failed


def open_broker(world: World, choreography: Choreography) -> MessageBroker:
    """The broker of one execution: the choreography's own (``broker=``), or the simulated bus."""
    if choreography.broker is not None:
        return choreography.broker(world, choreography)  # type: ignore[no-any-return]  # checked by the protocol's users
    return SimBus(world, choreography)


def corrupted(thunk: Any) -> partial[Any]:
    """The handler call ``thunk`` with its message mangled: the envelope's JSON cut off half-way,
    for this delivery and every redelivery to the same handler (the corrupt fault)."""
    handle = thunk.keywords.get("bus")
    delivery = handle._delivery if isinstance(handle, BusHandle) else None
    original = thunk.args[0] if thunk.args else None
    text = json.dumps(original, sort_keys=True, default=str)
    body = text[: len(text) // 2]
    if delivery is not None:
        delivery.body = body
    return partial(thunk.func, body, *thunk.args[1:], **thunk.keywords)
