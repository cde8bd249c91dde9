"""One deterministic simulated execution: participants behind a transport the harness owns, a
virtual clock, a network that can hold and duplicate requests, and the trace of it all.

Every delivery goes through `World.deliver`, a generator that decides the fault and yields the
participant calls it wants made; a sync and an async driver run it, so plain-Python, ``httpx``
and ``httpx`` async sagas share one implementation of every fault.
"""

from __future__ import annotations

import heapq
import inspect
import sys
from _thread import get_ident
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from itertools import chain
from operator import attrgetter
from typing import Any, ClassVar, cast

from .._choreography import PUBLISH
from .._saga import TERMINAL_STATUSES, Saga, Step
from ..errors import SagaDefinitionError, SagaStuckError, SagaVerifyError
from ..faults._kinds import Delay, DeliveryPoint, Duplicate, Fault, Outage, Pause
from ..faults._plan import FaultPlan
from . import _bus, _clocks, _coordinator, _watchdog
from ._actors import Cast
from ._clock import VirtualClock
from ._current import CURRENT
from ._events import EventPoint, Events, Moment
from ._execution import Execution
from ._ledger import Ledger, LedgerRow
from ._loop import LoopStopped, WorldLoop
from ._services import ClientEndpoint, Endpoint, ParticipantProxy, Services, Thunk
from ._trace import TraceEntry

#: Decides the fault (or None) for the n-th call of an endpoint.
Chooser = Callable[["Endpoint", int], "Fault | None"]

_LATENCY = 0.010
_JITTER = 0.005
_MASK64 = (1 << 64) - 1
#: A delivery count past every budget: an execution whose run is over refuses what its saga's
#: leftover tasks still call.
_CLOSED = 1 << 62
_TERMINAL = frozenset(TERMINAL_STATUSES)
#: Sort keys of every execution's end: in C, not a Python call per row.
_ROW_SEQ = attrgetter("seq")
_MOMENT_TIME = attrgetter("time")


class _Halted(BaseException):
    """Stops a saga that went on past its budget. Once a budget is spent the world first refuses
    the saga's calls (a transport error, which any saga handles) so that it can wind down by
    itself; a saga that keeps calling or sleeping anyway gets this. A BaseException so ``except
    Exception`` in saga code cannot swallow it and spin forever."""


#: The trace entry a participant is handling, in the task that called it (async sagas only: there
#: several calls may be in flight at once, each in its own task).
_DELIVERY: ContextVar[int] = ContextVar("saga_verify_delivery", default=-1)

#: Which operations of a saga's participant (by saga, participant and class) are ``async def``.
_ASYNC_OPERATIONS: dict[tuple[Saga, str, type], frozenset[str]] = {}


def _async_operations(saga: Saga, name: str, obj: object, operations: tuple[tuple[Step, str, int], ...]) -> frozenset[str]:
    found = frozenset(op for _, op, _ in operations if inspect.iscoroutinefunction(getattr(obj, op, None)))
    if "__getattr__" not in vars(type(obj)):  # what a dynamic participant answers may change
        _ASYNC_OPERATIONS[(saga, name, type(obj))] = found
    return found


class Transported(ABC):
    """A participant the saga reaches through a client of its own rather than by calling methods
    (`saga_verify.HttpParticipant`): the world gives it one `ClientEndpoint` per operation, and
    ``client`` returns what the saga sees as ``services.<name>``."""

    @abstractmethod
    def client(self, world: World, endpoints: Mapping[str, Endpoint]) -> Any:
        """What the saga sees as ``services.<name>``: a client whose requests reach ``endpoints``."""


@dataclass(frozen=True)
class _Frozen(Fault):
    """No plan's fault: what the world decides for a call that reaches a participant a pause
    froze. It waits in the participant until ``thaw``."""

    pause: Pause
    thaw: float

    kind: ClassVar[str] = "frozen"


class World:
    """Builds the participants for one execution and runs the saga against them."""

    def __init__(self, saga: Saga, chooser: Chooser, seed: int = 0) -> None:
        self.saga = saga
        self.clock = VirtualClock(self._check_time, self.fail)
        self.trace: list[TraceEntry | None] = []
        self._chooser = chooser
        # The world's private random source: a 64-bit LCG seeded from the plan's seed. It only
        # jitters latencies; random.Random would cost more to seed than a whole delivery.
        self._rng = (seed * 6364136223846793005 + 1442695040888963407) & _MASK64
        self._seed = seed
        #: Requests held in the network and late copies: due time, order, the call, and the saga
        #: instance that sent it (with several actors, not always the one whose turn it is).
        self.pending: list[tuple[float, int, Endpoint, int, str | None, Any, Thunk, str | None, str]] = []
        self.pending_order = 0
        self._deliveries = 0
        self._row_seq = 0
        self._current = -1
        self._correlation = saga.instance_id
        self.injected: list[Fault] = []
        self._outages: dict[tuple[str, str], Fault] = {}
        #: Participants frozen by a pause: the pause, and the virtual time they thaw.
        self._frozen: dict[str, tuple[Pause, float]] = {}
        self.async_mode = False
        #: Whether library clocks follow this execution's virtual clock (`_clocks`).
        self.virtual_time = saga.virtual_time
        #: Why the harness stopped the saga (a budget spent), once it did.
        self.halted: str | None = None
        self._after_halt = 0
        #: The first error of the harness raised inside the saga's code (a definition error, an
        #: error of the search deciding a fault): re-raised when the run ends, whatever the saga
        #: did with it, so that no saga can turn one into a verdict by catching it.
        self.harness_error: BaseException | None = None
        #: Where the saga was stuck when the watchdog stopped it (`_watchdog`).
        self.stuck: str | None = None
        #: The event loop of an async saga while it runs.
        self.loop: WorldLoop | None = None
        #: Waits, back-offs and the deadline, for the timeline (`Moment`).
        self.moments: list[Moment] = []
        #: The events the saga's participants send it, if the saga declares any.
        self.events = Events(self, _Halted) if saga.events else None
        #: Where each coordinator crash of this execution hit (``payment.charge#1``), in order.
        self.crashes: list[str] = []
        #: Where the current coordinator died, until a fresh one takes over.
        self.dead: str | None = None
        #: The virtual time the current coordinator died at.
        self.died_at = 0.0
        #: How many fresh coordinators recovered the saga.
        self.recoveries = 0
        #: Per actor (0: the saga's own instance), how many fresh coordinators it has had.
        self.incarnations: dict[int, int] = {}
        self.store: Any = _coordinator.open_store(self, saga.durable) if saga.durable is not None else None
        #: The actors of the execution and whose turn it is, when the saga declares other actors.
        self.cast: Cast | None = None
        #: The message bus, when the saga is a choreography (`_bus`).
        self.bus: _bus.MessageBroker | None = _bus.open_broker(self, saga.choreography) if saga.choreography is not None else None
        self.participants = self._build_participants()
        self.endpoints: dict[tuple[str, str], Endpoint] = {}
        self._proxies: dict[str, Any] = {}
        self.services = self._build_services()

    # -- set-up ------------------------------------------------------------------------------
    def _build_participants(self) -> dict[str, object]:
        build = self.saga.participants
        if not callable(build):
            raise SagaDefinitionError(
                f"saga {self.saga.name!r} names a System as its participants: run it through saga_verify.explore, "
                "replay or run_plan, which place its services on a runtime"
            )
        made = build()
        if not isinstance(made, Mapping):
            raise SagaDefinitionError(f"saga {self.saga.name!r}: participants() must return a mapping name -> participant, got {made!r}")
        missing = [n for n in self.saga.participant_names if n not in made]
        if missing:
            raise SagaDefinitionError(
                f"saga {self.saga.name!r}: participants() gave no {', '.join(map(repr, missing))}; "
                f"it gave {', '.join(map(repr, made)) or 'nothing'}"
            )
        for name, obj in made.items():
            ledger = getattr(obj, "ledger", None)
            if isinstance(ledger, Ledger):
                ledger.bind(self, name)
        return dict(made)

    def _build_services(self) -> Services:
        proxies: dict[str, Any] = {}
        saga = self.saga
        for name, ops in saga.layout:
            obj = self.participants[name]
            endpoints: dict[str, Endpoint] = {}
            transported = isinstance(obj, Transported)
            if transported:
                awaited: frozenset[str] = frozenset()
            else:
                found = _ASYNC_OPERATIONS.get((saga, name, type(obj)))
                awaited = found if found is not None else _async_operations(saga, name, obj, ops)
            for step, op, slot in ops:
                ep: Endpoint
                if transported:
                    ep = ClientEndpoint(self, step, op, slot, None)
                else:
                    fn = _bus.publisher(self, name) if op == PUBLISH and self.bus is not None else getattr(obj, op, None)
                    if not callable(fn):
                        raise SagaDefinitionError(
                            f"saga {self.saga.name!r}: participant {name!r} ({type(obj).__name__}) has no "
                            f"method {op!r} for step {step}"
                        )
                    ep = Endpoint(self, step, op, slot, fn, op in awaited)
                endpoints[op] = ep
                self.endpoints[(name, op)] = ep
            proxies[name] = cast(Transported, obj).client(self, endpoints) if transported else ParticipantProxy(name, endpoints, self)
        self._proxies = proxies
        return self.fresh_services()

    def fresh_services(self, actor: int = 0) -> Services:
        """What one coordinator (of ``actor``, 0 the saga's own instance) sees as ``services``:
        the same participants and store, a new object."""
        store = _coordinator.StoreSeam(self, actor) if self.store is not None else None
        return Services(self._proxies, self.clock, self, store)

    # -- what ledgers ask --------------------------------------------------------------------
    def current_delivery(self) -> tuple[int, str]:
        if self.async_mode:
            return _DELIVERY.get(), self._correlation
        return self._current, self._correlation

    def next_row_seq(self) -> int:
        self._row_seq += 1
        return self._row_seq - 1

    # -- time and events -----------------------------------------------------------------------
    @property
    def correlation_id(self) -> str:
        return self._correlation

    def note(self, time: float, kind: str, text: str) -> None:
        """Put a `Moment` on the timeline."""
        self.moments.append(Moment(time, kind, text))

    def random(self) -> float:
        """A number in [0, 1) from the world's private random source (seeded by the plan)."""
        self._rng = (self._rng * 6364136223846793005 + 1442695040888963407) & _MASK64
        return (self._rng >> 11) / 9007199254740992.0

    def send_event(self, participant: str, event: str, payload: Any, after: float) -> None:
        """A participant sends the saga an event (`Ledger.send`)."""
        if self.events is None:
            raise self.fail(
                SagaDefinitionError(
                    f"{participant} sent event {event!r}, but saga {self.saga.name!r} declares no events; "
                    "name it in its Step's events="
                )
            )
        self.events.send(participant, event, payload, after)

    def decide_event(self, point: EventPoint, attempt: int) -> Fault | None:
        """The fault (or None) at the ``attempt``-th arrival of an event."""
        key = (point.participant, point.operation)
        outage = self._outages.get(key) if self._outages else None
        if outage is not None:
            return outage
        fault = self._chooser(cast(Endpoint, point), attempt)
        if fault is not None:
            self.injected.append(fault)
            if isinstance(fault, Outage):
                self._outages[key] = fault
        return fault

    # -- what goes wrong ---------------------------------------------------------------------
    def fail(self, error: BaseException) -> BaseException:
        """Note an error of the harness that is about to be raised inside the saga's code; the run
        raises it again at its end (see ``harness_error``). Returns it, to be raised."""
        if self.harness_error is None:
            self.harness_error = error
        return error

    def halt(self, reason: str) -> None:
        """Stop the execution: it spent a budget, or can never go on. From now on its calls are
        refused, and an event loop stops at once."""
        if self.halted is None:
            self.halted = reason

    def _after_halting(self) -> None:
        """One more call or sleep after the halt. A saga gets as many as its call budget to wind
        down by itself; one that goes on after that is stopped by raising."""
        self._after_halt += 1
        if self._after_halt > self.saga.max_deliveries:
            raise _Halted(self.halted)

    # -- the network -------------------------------------------------------------------------
    def _check_time(self, now: float) -> None:
        if self.dead is not None:
            self.clock._now = self.died_at  # a dead coordinator's sleep does not pass
            raise _coordinator.CoordinatorDied(self.dead)
        if now > self.saga.max_seconds:
            self.halt(f"still running after {self.saga.max_seconds:g} virtual seconds")
        if self.halted is not None:
            self._after_halting()

    def _refuse(self, ep: Endpoint) -> BaseException:
        self._after_halting()
        return ep.errors("connect", f"{ep.participant}.{ep.operation}: connection refused: the execution was stopped ({self.halted})")

    def decide(self, ep: Endpoint) -> tuple[int, Fault | None]:
        """Count the call, decide its fault, let network latency pass."""
        if self.dead is not None:
            raise _coordinator.CoordinatorDied(self.dead)  # a dead coordinator calls nobody
        self._deliveries += 1
        if self.halted is not None or self._deliveries > self.saga.max_deliveries:
            if self._deliveries > _CLOSED:
                raise ep.errors("connect", f"{ep.participant}.{ep.operation}: connection refused: the saga's run is over")
            self.halt(f"made more than {self.saga.max_deliveries} calls")
            raise self._refuse(ep)
        ep.calls += 1
        attempt = ep.calls
        self._rng = (self._rng * 6364136223846793005 + 1442695040888963407) & _MASK64
        now = self.clock._now + _LATENCY + (self._rng >> 11) * _JITTER / 9007199254740992.0
        self.clock._now = now
        if now > self.saga.max_seconds:
            ep.calls -= 1
            self.halt(f"still running after {self.saga.max_seconds:g} virtual seconds")
            raise self._refuse(ep)
        if self.events is not None and self.events.in_flight:
            self.events.land(now)
        frozen = self._frozen.get(ep.participant) if self._frozen else None
        if frozen is not None and now < frozen[1]:
            # A frozen participant takes in nothing else: whatever else the plan says about this
            # call does not happen (and is not reported as injected).
            return attempt, _Frozen(DeliveryPoint(ep.participant, ep.operation, attempt), *frozen)
        outage = self._outages.get((ep.participant, ep.operation)) if self._outages else None
        if outage is not None:
            fault: Fault | None = outage
        else:
            fault = self._chooser(ep, attempt)
            if fault is not None:
                self.injected.append(fault)
                if isinstance(fault, Outage):
                    self._outages[(ep.participant, ep.operation)] = fault
        return attempt, fault

    def apply_now(self, ep: Endpoint, attempt: int, key: str | None, request: Any, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """The common case, kept off the generator path: no fault, nothing held in the network."""
        trace = self.trace
        seq = len(trace)
        trace.append(None)
        previous = self._current
        self._current = seq
        token = _DELIVERY.set(seq) if self.async_mode else None
        arrived = self.clock._now
        try:
            reply = fn(*args, **kwargs)
        except Exception as exc:
            trace[seq] = TraceEntry(
                seq, arrived, ep.participant, ep.operation, attempt, self._correlation, key, request,
                "raised", f"{type(exc).__name__}: {exc}", None,
            )
            raise
        finally:
            self._current = previous
            if token is not None:
                _DELIVERY.reset(token)
        trace[seq] = TraceEntry(seq, arrived, ep.participant, ep.operation, attempt, self._correlation, key, request, "ok", reply, None)
        return reply

    def deliver(self, ep: Endpoint, thunk: Thunk, key: str | None, request: Any) -> Generator[Thunk, Any, Any]:
        """One call from the saga to a participant. Yields the participant calls to make (the
        driver makes them and sends back the result); returns the caller's reply or raises the
        caller's error."""
        attempt, fault = self.decide(ep)
        return (yield from self.deliver_decided(ep, attempt, fault, thunk, key, request))

    def deliver_decided(self, ep: Endpoint, attempt: int, fault: Fault | None, thunk: Thunk, key: str | None, request: Any) -> Generator[Thunk, Any, Any]:
        clock = self.clock
        if self.pending:
            yield from self._flush(clock._now)
        if fault is None:
            return (yield from self._apply(ep, attempt, key, request, thunk, "ok", None))

        kind = fault.kind
        if kind in _coordinator.KINDS:
            return (yield from _coordinator.crash(self, ep, attempt, fault, thunk, key, request))
        label = fault.label
        point = f"{ep.participant}.{ep.operation}#{attempt}"
        if kind == "switch":
            handover = self.cast.switch(point) if self.cast is not None else None
            if handover is not None:
                yield handover  # the other actors move; this call goes out when the turn is back
                clock._now += _LATENCY  # on its way now: it lands after what the others did
                if self.pending:
                    yield from self._flush(clock._now)
            return (yield from self._apply(ep, attempt, key, request, thunk, "ok", label))
        if kind in ("fail", "outage"):
            self._record(ep, attempt, key, request, "failed", None, label)
            raise ep.errors("connect", f"{point}: connection refused (injected {label})")
        if kind == "timeout":
            self._record(ep, attempt, key, request, "timed-out", None, label)
            clock._now += ep.timeout
            raise ep.errors("timeout", f"{point}: no reply within {ep.timeout:g}s (injected {label})")
        if kind == "lose-reply":
            try:
                yield from self._apply(ep, attempt, key, request, thunk, "reply-lost", label)
            except Exception:
                pass  # the caller never learns the participant failed: its reply is lost too
            clock._now += ep.timeout
            raise ep.errors("timeout", f"{point}: no reply within {ep.timeout:g}s (injected {label})")
        if kind == "crash":
            try:
                yield from self._apply(ep, attempt, key, request, thunk, "crashed", label)
            except Exception:
                pass  # it died before it could answer, whatever it would have answered
            restart = self.saga.restart_hook(ep.participant)
            assert restart is not None  # plans are validated: crash only where a step says how to restart
            self._hook("restart", ep, restart)
            raise ep.errors("reset", f"{point}: connection reset: {ep.participant} died before it replied (injected {label})")
        if kind == "corrupt":
            mangled = _bus.corrupted(thunk)
            if isinstance(request, dict) and "args" in request:
                request = {**request, "args": list(mangled.args)}  # the trace shows what arrived
            thunk = mangled
            return (yield from self._apply(ep, attempt, key, request, thunk, "ok", label))
        if kind == "refuse":
            refuse = ep.step.refuse
            assert refuse is not None  # plans are validated: refuse only where the step declares how
            self._hook("refuse", ep, refuse)
            return (yield from self._apply(ep, attempt, key, request, thunk, "ok", label))
        if kind == "duplicate":
            assert isinstance(fault, Duplicate)
            reply = yield from self._apply(ep, attempt, key, request, thunk, "ok", label)
            if fault.lag <= 0:
                yield from self._apply_quietly(ep, attempt, key, request, thunk, "copy", label)
            else:
                self._hold(clock._now + fault.lag, ep, attempt, key, request, thunk, label)
            return reply
        if kind == "delay":
            assert isinstance(fault, Delay)
            if fault.seconds < ep.timeout:
                clock._now += fault.seconds
                return (yield from self._apply(ep, attempt, key, request, thunk, "ok", label))
            self._record(ep, attempt, key, request, "held", None, label)
            self._hold(clock._now + fault.seconds, ep, attempt, key, request, thunk, label)
            clock._now += ep.timeout
            raise ep.errors("timeout", f"{point}: no reply within {ep.timeout:g}s (injected {label})")
        if kind == "pause" or kind == "frozen":
            # The call that froze the participant carries the pause; the others merely arrived
            # while it was frozen, and each waits in it until the thaw.
            if isinstance(fault, _Frozen):
                pause, thaw, label_here = fault.pause, fault.thaw, None
            else:
                assert isinstance(fault, Pause)
                pause, thaw, label_here = fault, clock._now + fault.seconds, label
                self._frozen[ep.participant] = (pause, thaw)
            if thaw - clock._now < ep.timeout:
                # Answered within the timeout, at the thaw: after what was waiting in it already.
                clock._now = thaw
                if self.pending:
                    yield from self._flush(thaw)
                return (yield from self._apply(ep, attempt, key, request, thunk, "ok", label_here))
            self._record(ep, attempt, key, request, "frozen", None, label_here)
            self._hold(thaw, ep, attempt, key, request, thunk, pause.label)
            clock._now += ep.timeout
            raise ep.errors("timeout", f"{point}: no reply within {ep.timeout:g}s ({ep.participant} frozen by injected {pause.label})")
        raise self.fail(SagaDefinitionError(f"fault kind {kind!r} is not known to this world"))  # pragma: no cover

    def _hook(self, what: str, ep: Endpoint, hook: Callable[[Any], None]) -> None:
        """Run a step's refuse or restart hook: an error in it is the harness's, not the saga's."""
        try:
            hook(self.participants[ep.participant])
        except SagaVerifyError as exc:
            raise self.fail(exc) from None
        except Exception as exc:
            raise self.fail(
                SagaDefinitionError(f"the {what} hook of step {ep.step} raised {type(exc).__name__}: {exc}")
            ) from exc

    def _hold(self, due: float, ep: Endpoint, attempt: int, key: str | None, request: Any, thunk: Thunk, label: str) -> None:
        self.pending_order += 1
        heapq.heappush(self.pending, (due, self.pending_order, ep, attempt, key, request, thunk, label, self._correlation))

    def flush_due(self) -> Generator[Thunk, Any, None]:
        """Land the held requests due by now (a saga waiting on virtual time for an event)."""
        return self._flush(self.clock._now)

    def _flush(self, until: float | None) -> Generator[Thunk, Any, None]:
        """Land held requests and late copies that are due, oldest first, each at its due time
        (never before the entry it follows, so the trace's times never go back)."""
        clock = self.clock
        while self.pending and (until is None or self.pending[0][0] <= until):
            due, _, ep, attempt, key, request, thunk, label, sender = heapq.heappop(self.pending)
            now = clock._now
            last = next((e.time for e in reversed(self.trace) if e is not None), 0.0)
            clock._now = max(due, last)
            correlation = self._correlation
            self._correlation = sender  # it lands as the request of the instance that sent it
            try:
                yield from self._apply_quietly(ep, attempt, key, request, thunk, "late", label)
            finally:
                self._correlation = correlation
                clock._now = max(now, clock._now) if until is None else now

    def _apply_quietly(self, ep: Endpoint, attempt: int, key: str | None, request: Any, thunk: Thunk, outcome: str, label: str | None) -> Generator[Thunk, Any, None]:
        try:
            yield from self._apply(ep, attempt, key, request, thunk, outcome, label)
        except Exception:
            pass  # nobody waits for the reply of a copy or a late request

    def _apply(self, ep: Endpoint, attempt: int, key: str | None, request: Any, thunk: Thunk, outcome: str, label: str | None) -> Generator[Thunk, Any, Any]:
        seq = len(self.trace)
        self.trace.append(None)  # reserve the slot: ledger rows written during the call point at it
        # Stamped with the time it arrived: an async participant may await, and other calls land
        # meanwhile, so the trace's times follow its order.
        arrived = self.clock._now
        previous = self._current
        self._current = seq
        token = _DELIVERY.set(seq) if self.async_mode else None
        try:
            reply = yield thunk
        except Exception as exc:
            self.trace[seq] = TraceEntry(
                seq, arrived, ep.participant, ep.operation, attempt, self._correlation, key, request,
                "raised", f"{type(exc).__name__}: {exc}", label,
            )
            raise
        finally:
            self._current = previous
            if token is not None:
                _DELIVERY.reset(token)
        self.trace[seq] = TraceEntry(
            seq, arrived, ep.participant, ep.operation, attempt, self._correlation, key, request,
            outcome, ep.summarize(reply), label,
        )
        return reply

    def _record(self, ep: Endpoint, attempt: int, key: str | None, request: Any, outcome: str, reply: Any, label: str | None) -> None:
        self.trace.append(
            TraceEntry(len(self.trace), self.clock._now, ep.participant, ep.operation, attempt, self._correlation, key, request, outcome, reply, label)
        )

    # -- drivers -----------------------------------------------------------------------------
    def drive(self, gen: Generator[Thunk, Any, Any]) -> Any:
        """Run a delivery whose participant calls are plain functions."""
        try:
            thunk = next(gen)
            while True:
                try:
                    value = thunk()
                except Exception as exc:
                    thunk = gen.throw(exc)
                else:
                    thunk = gen.send(value)
        except StopIteration as stop:
            return stop.value

    async def adrive(self, gen: Generator[Thunk, Any, Any]) -> Any:
        """Run a delivery whose participant calls may be coroutines."""
        try:
            thunk = next(gen)
            while True:
                try:
                    value = thunk()
                    if inspect.isawaitable(value):
                        value = await value
                except Exception as exc:
                    thunk = gen.throw(exc)
                else:
                    thunk = gen.send(value)
        except StopIteration as stop:
            return stop.value

    # -- the run -----------------------------------------------------------------------------
    def run(self) -> Execution:
        saga = self.saga
        result: Any = None
        error: BaseException | None = None
        returned_at: float | None = None
        owned: frozenset[str] = frozenset()
        if self.virtual_time and (_clocks.SWITCH.travel is None or len(sys.modules) != _clocks.SWITCH.modules_seen):
            _clocks.engage()
        context = CURRENT.set(self)
        # The watchdog's bookkeeping, inline: it costs every execution.
        ident = get_ident()
        active = _watchdog.ACTIVE
        previous = active.get(ident)
        active[ident] = self
        if _watchdog.THREAD is None:
            _watchdog.start()
        try:
            try:
                try:
                    if saga.actors:
                        self.cast = Cast(self)
                        result = self.cast.run()
                    elif saga.durable is not None:
                        result = _coordinator.coordinate(self)
                    elif self.bus is not None:
                        result = _bus.drive(self)
                    else:
                        result = self.run_entry(saga.run)
                except Exception:
                    returned_at = self.clock._now
                    raise
                returned_at = self.clock._now
            except _Halted:
                pass
            except _watchdog.Stuck:
                pass
            except KeyboardInterrupt:
                if self.stuck is None:
                    raise  # a person's Ctrl-C, not the watchdog's
            except SagaVerifyError as exc:
                self.fail(exc)
            except Exception as exc:
                error = exc
            # The network eventually delivers what it held, whether or not anyone still waits.
            if self.pending and self.stuck is None and self.harness_error is None:
                try:
                    if self.async_mode:
                        self._loop_run(self.adrive(self._flush(None)))
                    else:
                        self.drive(self._flush(None))
                except _Halted:
                    pass
            if self.events is not None and self.stuck is None and self.harness_error is None:
                self.events.land(None)  # what was sent arrives, whether or not the saga still waits
        except _watchdog.Stuck:
            pass  # the watchdog's interrupt landed in the harness's own code, after the saga's
        finally:
            if previous is None:
                del active[ident]
            else:
                active[ident] = previous
            if self.stuck is not None:
                _watchdog.take_back(ident)
            CURRENT.reset(context)
            if self.store is not None:
                if self.stuck is None and self.harness_error is None:
                    instances = self.cast.correlations if self.cast is not None else (self._correlation,)
                    owned = _coordinator.still_owned(self, instances)
                _coordinator.close_store(self)
        if self.stuck is not None:
            raise SagaStuckError(
                f"saga {saga.name!r} did not return within {saga.max_real_seconds:g} real seconds "
                f"(max_real_seconds) under {str(FaultPlan(tuple(self.injected))) or 'no faults'}: it waits on "
                "something saga-verify does not own (a thread, a lock, real I/O or a busy loop), so it was "
                f"stopped from outside. It was at:\n{self.stuck}"
            )
        if self.harness_error is not None:
            raise self.harness_error
        if self.halted is not None:
            status = "halted"
            error = None  # what it raised after it was stopped is the stop's doing
        elif error is not None:
            status = "crashed"
        else:
            status_value = saga.outcome(result)
            status = status_value if isinstance(status_value, str) else repr(status_value)
        trace = tuple(filter(None, self.trace))  # a TraceEntry is a non-empty tuple: only the Nones go
        if saga.deadline is not None and trace and max(trace[-1].time, self.clock._now) > saga.deadline:
            self.note(saga.deadline, "deadline", f"the saga's deadline passes (t={saga.deadline:g})")
        ledgers = {name: tuple(getattr(obj, "ledger", ()) or ()) for name, obj in self.participants.items()}
        rows = tuple(sorted(chain.from_iterable(ledgers.values()), key=_ROW_SEQ))
        operations = saga.operations
        for row in rows:
            if (row.participant, row.action) not in operations and row.participant in ledgers:
                raise self._unknown_action(row)
        return Execution(
            saga=saga,
            status=status,
            result=result,
            error=error,
            halted=self.halted,
            trace=trace,
            ledgers=ledgers,
            participants=self.participants,
            faults=tuple(self.injected),
            seed=self._seed,
            correlation_id=self._correlation,
            elapsed=self.clock._now,
            returned_at=returned_at if self.halted is None else None,
            moments=tuple(sorted(self.moments, key=_MOMENT_TIME)) if self.moments else (),
            actors=self.cast.outcomes() if self.cast is not None else (),
            owned=owned,
            bus=self.bus.record() if self.bus is not None else None,
            _rows=rows,
        )

    def _unknown_action(self, row: LedgerRow) -> SagaDefinitionError:
        declared = sorted(op for participant, op in self.saga.operations if participant == row.participant)
        return SagaDefinitionError(
            f"participant {row.participant!r} recorded {row.action!r} in its ledger, which no step of saga "
            f"{self.saga.name!r} declares; the operations of {row.participant}: {', '.join(declared)}. A ledger "
            "row names the operation that took effect (a step's action or compensation), or every invariant "
            "about that step holds for nothing"
        )

    def run_entry(self, entry: Callable[[Any, Any], Any]) -> Any:
        """Run the saga's ``run`` (or, on a fresh coordinator, its ``recover``) to its end."""
        saga = self.saga
        # The saga's own run is known once per saga (`Saga.is_async`); a recovery asks here.
        self.async_mode = saga.is_async if entry is saga.run else inspect.iscoroutinefunction(entry)
        if self.async_mode:
            return self._loop_run(entry(self.services, saga.input))
        result = entry(self.services, saga.input)
        if not isinstance(result, str) and inspect.isawaitable(result):
            raise self.fail(SagaDefinitionError(f"saga {saga.name!r}: run returned an awaitable; declare it with 'async def'"))
        return result

    def _loop_run(self, coro: Any) -> Any:
        loop = WorldLoop(self)
        self.loop = loop
        try:
            return loop.run_until_complete(coro)
        except LoopStopped:
            if self.stuck is not None:
                raise _watchdog.Stuck from None
            if self.dead is not None:
                raise _coordinator.CoordinatorDied(self.dead) from None
            raise _Halted(self.halted) from None
        finally:
            # Tasks the saga left behind go no further: what their clean-up calls is refused.
            deliveries = self._deliveries
            self._deliveries = _CLOSED
            loop.abandon()
            self.loop = None
            loop.close()
            if self.dead is not None:
                self._deliveries = deliveries  # a fresh coordinator recovers: the count goes on


def plan_chooser(plan: FaultPlan) -> Callable[[Endpoint | DeliveryPoint, int], Fault | None]:
    """Decide faults by looking them up in a plan: the fault planned for the ``attempt``-th call
    of an endpoint's (or a delivery point's) operation, an outage from an earlier attempt, or None."""
    exact, outages = plan.by_point()
    if not exact and not outages:
        return _no_fault
    def choose(ep: Endpoint | DeliveryPoint, attempt: int) -> Fault | None:
        fault = exact.get((ep.participant, ep.operation, attempt))
        if fault is None and outages:
            outage = outages.get((ep.participant, ep.operation))
            if outage is not None and attempt >= outage.at.attempt:
                return outage
        return fault
    return choose


def _no_fault(ep: Endpoint | DeliveryPoint, attempt: int) -> None:
    return None


def run_plan(saga: Saga, plan: FaultPlan | None = None) -> Execution:
    """Execute the saga once under ``plan`` (no faults if None) and return what happened."""
    plan = plan if plan is not None else FaultPlan()
    plan.validate(saga)
    with _clocks.clock_session():
        return World(saga, plan_chooser(plan), plan.seed).run()


