"""Events a participant sends the saga on its own (a payment webhook, an approval): their arrivals
are delivery points the plan may delay, duplicate or drop, and the saga awaits them with a
deadline on virtual time (``services.wait_for``)."""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable, Generator
from typing import Any, NamedTuple

from ..errors import SagaDefinitionError
from ..faults._kinds import Delay, Duplicate
from ._trace import TraceEntry


class Moment(NamedTuple):
    """Something about time that a person reading the timeline wants to see, beside the
    deliveries: a wait for an event begun or given up, a back-off, the deadline passing."""

    time: float
    """Virtual seconds when it happened."""
    kind: str
    """``wait``, ``received``, ``wait-timeout``, ``wait-forever``, ``backoff``, ``gave-up`` or
    ``deadline``."""
    text: str
    """What happened, in words."""


class EventPoint:
    """What a fault chooser sees for an event's arrival: shaped like an endpoint (participant,
    operation, slot, world), so plans and searches decide there as at a call."""

    __slots__ = ("calls", "operation", "participant", "slot", "world")

    def __init__(self, world: Any, participant: str, event: str, slot: int) -> None:
        self.world = world
        self.participant = participant
        self.operation = event
        #: After the saga's operations: the alphabet lists events after them (`faults._alphabet`).
        self.slot = slot
        self.calls = 0


class _Arrival(NamedTuple):
    due: float
    order: int
    point: EventPoint
    attempt: int
    payload: Any
    outcome: str
    label: str | None


class Events:
    """The events of one execution: sent, in flight, arrived and not yet taken by the saga."""

    def __init__(self, world: Any, halted: Callable[[str], BaseException]) -> None:
        self.world = world
        saga = world.saga
        first = len(saga.operations)
        self.points = {(p, e): EventPoint(world, p, e, first + i) for i, (p, e) in enumerate(saga.events)}
        self.in_flight: list[_Arrival] = []
        self._order = 0
        self.arrived: dict[tuple[str, str], deque[Any]] = {}
        self._halted = halted
        #: What an async wait with nothing in flight awaits: resolved when something is sent.
        self._sent: Any = None

    # -- the participant's side ----------------------------------------------------------------
    def send(self, participant: str, event: str, payload: Any, after: float) -> None:
        """``participant`` sends ``event``; it lands ``after`` virtual seconds from now, unless
        the plan decides otherwise."""
        world = self.world
        point = self.points.get((participant, event))
        if point is None:
            declared = [f"{p}.{e}" for p, e in self.points if p == participant]
            raise world.fail(
                SagaDefinitionError(
                    f"{participant} sent event {event!r}, which no step of saga {world.saga.name!r} declares; "
                    f"declared events of {participant}: {', '.join(declared) or 'none'}. Add it to its Step's events="
                )
            )
        if isinstance(after, bool) or not isinstance(after, (int, float)) or not math.isfinite(after) or after < 0:
            raise world.fail(SagaDefinitionError(f"{participant}.{event}: an event is sent after a finite number of seconds >= 0, got {after!r}"))
        point.calls += 1
        attempt = point.calls
        fault = world.decide_event(point, attempt)
        due = world.clock._now + after
        label = fault.label if fault is not None else None
        if fault is None:
            self._schedule(due, point, attempt, payload, "event", None)
        elif fault.kind in ("drop", "outage"):
            self._schedule(due, point, attempt, payload, "dropped", label)
        elif isinstance(fault, Delay):
            self._schedule(due + fault.seconds, point, attempt, payload, "event", label)
        elif isinstance(fault, Duplicate):
            self._schedule(due, point, attempt, payload, "event", label)
            self._schedule(due + fault.lag, point, attempt, payload, "copy", label)
        else:  # pragma: no cover  # plans are validated: only event kinds reach an event
            raise world.fail(SagaDefinitionError(f"fault {fault} cannot happen to an event"))

    def _schedule(self, due: float, point: EventPoint, attempt: int, payload: Any, outcome: str, label: str | None) -> None:
        self._order += 1
        heapq.heappush(self.in_flight, _Arrival(due, self._order, point, attempt, payload, outcome, label))
        sent, self._sent = self._sent, None
        if sent is not None and not sent.done() and not sent.get_loop().is_closed():
            sent.set_result(None)  # wakes an async wait: something more is in flight

    # -- the network ---------------------------------------------------------------------------
    def land(self, until: float | None) -> None:
        """Let the events due by ``until`` (all, if None) arrive, in order, into the trace."""
        world = self.world
        trace = world.trace
        while self.in_flight and (until is None or self.in_flight[0].due <= until):
            arrival = heapq.heappop(self.in_flight)
            last = next((e.time for e in reversed(trace) if e is not None), 0.0)
            point = arrival.point
            trace.append(
                TraceEntry(
                    len(trace), max(arrival.due, last), point.participant, point.operation, arrival.attempt,
                    world.correlation_id, None, arrival.payload, arrival.outcome, None, arrival.label,
                )
            )
            if arrival.outcome != "dropped":
                self.arrived.setdefault((point.participant, point.operation), deque()).append(arrival.payload)

    # -- the saga's side -----------------------------------------------------------------------
    def wait_for(self, name: object, timeout: float | None) -> Any:
        """The next arrival of event ``name`` (``"payment.paid"``) the saga has not taken yet,
        waiting on virtual time for it at most ``timeout`` seconds (None: for ever)."""
        world = self.world
        clock = world.clock
        waiting = self._waiting(name, timeout)
        try:
            wait = next(waiting)
            while True:
                if wait is None:
                    # Nothing is in flight, and in a plain saga nothing else runs to send more.
                    raise self._stop_waiting(name)
                clock.advance(wait)
                if world.pending and world.halted is None:
                    world.drive(world.flush_due())  # a held request lands, and may send an event
                wait = waiting.send(None)
        except StopIteration as done:
            return done.value

    async def await_for(self, name: object, timeout: float | None) -> Any:
        """`wait_for` for an ``async def`` saga: it waits on the event loop, so the saga's other
        tasks run meanwhile (and may make calls that send the event, which wakes it)."""
        import asyncio

        waiting = self._waiting(name, timeout)
        try:
            wait = next(waiting)
            while True:
                # Another task may send something meanwhile: that wakes the wait early. With nothing
                # to wait for (None) and no task that ever sends, the loop finds every task waiting
                # for what cannot happen and stops the execution.
                sent = self._sent = asyncio.get_running_loop().create_future()
                if wait is None:
                    await sent
                else:
                    try:
                        await asyncio.wait_for(sent, wait)
                    except TimeoutError:
                        pass
                world = self.world
                if world.pending and world.halted is None:
                    await world.adrive(world.flush_due())  # a held request lands, and may send an event
                wait = waiting.send(None)
        except StopIteration as done:
            return done.value

    def _stop_waiting(self, name: object) -> BaseException:
        world = self.world
        reason = f"waited for {name} with no deadline, and nothing will ever send it"
        world.note(world.clock._now, "wait-forever", f"nothing more will arrive: the wait for {name} can never end")
        world.halt(reason)
        return self._halted(reason)

    def _waiting(self, name: object, timeout: float | None) -> Generator[float | None, None, Any]:
        """The wait itself, for either driver: yields the virtual seconds to wait next (None: until
        something is sent), returns the payload, or raises TimeoutError at the deadline."""
        world = self.world
        key = self._key(name)
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not math.isfinite(timeout) or timeout < 0
        ):
            raise world.fail(SagaDefinitionError(f"wait_for({name!r}): timeout must be a finite number of seconds >= 0 or None, got {timeout!r}"))
        clock = world.clock
        self.land(clock._now)
        box = self.arrived.setdefault(key, deque())
        if box:
            return box.popleft()
        started = clock._now
        until = None if timeout is None else started + timeout
        world.note(started, "wait", f"the saga waits for {name}" + (f" until t={until:.3f}" if until is not None else ", with no deadline"))
        while True:
            # The next moment anything can change: an event lands, a request held in the network
            # lands (its participant may send one), or the wait's deadline.
            wakes = [t for t in (until, self.in_flight[0].due if self.in_flight else None, world.pending[0][0] if world.pending else None) if t is not None]
            if not wakes:
                yield None
            else:
                due = min(wakes)
                if due > clock._now:
                    yield due - clock._now
            if world.halted is not None:
                raise self._halted(world.halted)
            self.land(clock._now)
            if box:
                world.note(clock._now, "received", f"{name} arrives: the saga stops waiting")
                return box.popleft()
            if until is not None and clock._now >= until:
                world.note(clock._now, "wait-timeout", f"{name} did not arrive within {timeout:g}s: the saga stops waiting")
                raise TimeoutError(f"{name} did not arrive within {timeout:g}s")

    def _key(self, name: object) -> tuple[str, str]:
        participant, _, event = name.partition(".") if isinstance(name, str) else ("", "", "")
        if (participant, event) not in self.points:
            declared = ", ".join(f"{p}.{e}" for p, e in self.points) or "none"
            raise self.world.fail(
                SagaDefinitionError(f"the saga waits for event {name!r}, which no step declares; declared events: {declared}")
            )
        return participant, event
