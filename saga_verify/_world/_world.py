"""One deterministic simulated execution: participants behind a transport the harness owns, a
virtual clock, a network that can hold and duplicate requests, and the trace of it all.

Every delivery goes through `World.deliver`, a generator that decides the fault and yields the
participant calls it wants made; a sync and an async driver run it, so plain-Python, ``httpx``
and ``httpx`` async sagas share one implementation of every fault.
"""

from __future__ import annotations

import asyncio
import heapq
import inspect
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from functools import cached_property, partial
from typing import Any, ClassVar

from .._saga import Saga, Step
from ..errors import SagaDefinitionError
from ..faults._kinds import Delay, DeliveryPoint, Duplicate, Fault, Outage, Pause
from ..faults._plan import FaultPlan
from ._clock import VirtualClock
from ._ledger import Ledger, LedgerRow
from ._trace import TraceEntry

#: Decides the fault (or None) for the n-th call of an endpoint.
Chooser = Callable[["Endpoint", int], "Fault | None"]
Thunk = Callable[[], Any]
ErrorFactory = Callable[[str, str], BaseException]

_LATENCY = 0.010
_JITTER = 0.005
_MASK64 = (1 << 64) - 1


class _Halted(BaseException):
    """Stops a saga that exceeded its budget. A BaseException so ``except Exception`` in saga code
    cannot swallow it and spin forever."""


def _same(value: Any) -> Any:
    return value


def plain_errors(kind: str, message: str) -> BaseException:
    """The errors a plain-Python caller sees: builtins, so the saga needs nothing of ours."""
    if kind == "timeout":
        return TimeoutError(message)
    if kind == "reset":
        return ConnectionResetError(message)
    return ConnectionRefusedError(message)


class Endpoint:
    """One (participant, operation) of one world, with its call counter."""

    __slots__ = ("calls", "fn", "operation", "participant", "slot", "step", "world")

    #: Builds the error the caller sees for an injected failure.
    errors: ErrorFactory = staticmethod(plain_errors)
    #: Turns a participant's reply into what the trace records.
    summarize: Callable[[Any], Any] = staticmethod(_same)

    def __init__(self, world: World, step: Step, operation: str, slot: int, fn: Callable[..., Any] | None) -> None:
        self.world = world
        self.participant = step.participant
        self.operation = operation
        self.step = step
        #: Index of this operation in the saga's sorted operations (for searches).
        self.slot = slot
        self.calls = 0
        self.fn = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        fn = self.fn
        if fn is None:
            raise SagaDefinitionError(f"{self.participant}.{self.operation} is an HTTP endpoint; call it through its client")
        world = self.world
        if world.async_mode:
            raise SagaDefinitionError(
                f"an async saga called {self.participant}.{self.operation} synchronously; in an async saga "
                "use an async client (HttpParticipant(asynchronous=True))"
            )
        request: Any = kwargs if not args else {"args": list(args), **kwargs}
        key = kwargs.get("idempotency_key")
        attempt, fault = world.decide(self)
        if fault is None and not world.pending:
            return world.apply_now(self, attempt, key, request, fn, args, kwargs)
        thunk = partial(fn, *args, **kwargs)
        return world.drive(world.deliver_decided(self, attempt, fault, thunk, key, request))

    def __repr__(self) -> str:
        return f"<endpoint {self.participant}.{self.operation}>"


class ClientEndpoint(Endpoint):
    """An endpoint reached through a client of the participant's own (httpx): its errors and
    replies are the client's."""

    __slots__ = ("errors", "summarize")


class Transported:
    """A participant the saga reaches through a client of its own rather than by calling methods
    (`saga_verify.HttpParticipant`): the world gives it one `ClientEndpoint` per operation, and
    ``client`` returns what the saga sees as ``services.<name>``."""

    def client(self, world: World, endpoints: Mapping[str, Endpoint]) -> Any:
        raise NotImplementedError


class ParticipantProxy:
    """What the saga sees as ``services.<participant>``: its declared operations, through the harness."""

    def __init__(self, name: str, endpoints: Mapping[str, Endpoint]) -> None:
        self.__dict__.update(endpoints)
        self.__dict__["_name"] = name

    def __getattr__(self, name: str) -> Any:
        declared = sorted(k for k in self.__dict__ if not k.startswith("_"))
        raise SagaDefinitionError(
            f"the saga called {self._name}.{name}, which no step declares; declared operations of "
            f"{self._name}: {', '.join(declared)}. Add it to a Step (as action or compensation)."
        )


class Services:
    """The saga's view of the world: ``services.<participant>`` and ``services.clock``."""

    def __init__(self, proxies: Mapping[str, Any], clock: VirtualClock) -> None:
        self.__dict__.update(proxies)
        self.clock = clock

    def __getattr__(self, name: str) -> Any:
        known = sorted(k for k in self.__dict__ if k != "clock")
        raise SagaDefinitionError(f"the saga asked for services.{name}; this saga's participants are: {', '.join(known)}")

    def __getitem__(self, name: str) -> Any:
        return getattr(self, name)


@dataclass(frozen=True)
class Execution:
    """A finished execution: what invariants and reports read."""

    saga: Saga
    status: str
    """``completed``, ``compensated``, ``failed``, or ``halted`` / ``crashed`` / an unrecognised value."""
    result: Any
    """What the saga returned (None if it raised or was halted)."""
    error: BaseException | None
    """The exception the saga raised, if it raised."""
    halted: str | None
    """Why the harness stopped the saga, if it did (budget exceeded)."""
    trace: tuple[TraceEntry, ...]
    ledgers: Mapping[str, tuple[LedgerRow, ...]]
    participants: Mapping[str, object]
    """The participant objects themselves, for invariants that read their state."""
    faults: tuple[Fault, ...]
    """The faults that were injected, in order (reporting only; invariants should not need it)."""
    seed: int = 0
    correlation_id: str = ""
    elapsed: float = 0.0
    """Virtual seconds from start to the last delivery."""
    _rows: tuple[LedgerRow, ...] = field(default=(), repr=False)

    @property
    def plan(self) -> FaultPlan:
        """The injected faults as a plan that replays this execution."""
        return FaultPlan(self.faults, seed=self.seed, saga=self.saga.name, saga_ref=self.saga.ref)

    @cached_property
    def effects(self) -> Mapping[str, Mapping[tuple[str, str], list[LedgerRow]]]:
        """Ledger rows by saga instance, then by (participant, action), in effect order."""
        out: dict[str, dict[tuple[str, str], list[LedgerRow]]] = {}
        for row in self._rows:
            out.setdefault(row.correlation_id, {}).setdefault((row.participant, row.action), []).append(row)
        return out

    def rows(self, participant: str | None = None, action: str | None = None) -> list[LedgerRow]:
        """Ledger rows of every participant in effect order, optionally filtered."""
        return [
            r
            for r in self._rows
            if (participant is None or r.participant == participant) and (action is None or r.action == action)
        ]



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
        self.clock = VirtualClock(self._check_time)
        self.trace: list[TraceEntry | None] = []
        self._chooser = chooser
        # The world's private random source: a 64-bit LCG seeded from the plan's seed. It only
        # jitters latencies; random.Random would cost more to seed than a whole delivery.
        self._rng = (seed * 6364136223846793005 + 1442695040888963407) & _MASK64
        self._seed = seed
        self.pending: list[tuple[float, int, Endpoint, int, str | None, Any, Thunk, str | None]] = []
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
        self.participants = self._build_participants()
        self.endpoints: dict[tuple[str, str], Endpoint] = {}
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
        for name, ops in self.saga.layout:
            obj = self.participants[name]
            endpoints: dict[str, Endpoint] = {}
            for step, op, slot in ops:
                ep: Endpoint
                if isinstance(obj, Transported):
                    ep = ClientEndpoint(self, step, op, slot, None)
                else:
                    fn = getattr(obj, op, None)
                    if not callable(fn):
                        raise SagaDefinitionError(
                            f"saga {self.saga.name!r}: participant {name!r} ({type(obj).__name__}) has no "
                            f"method {op!r} for step {step}"
                        )
                    ep = Endpoint(self, step, op, slot, fn)
                endpoints[op] = ep
                self.endpoints[(name, op)] = ep
            proxies[name] = obj.client(self, endpoints) if isinstance(obj, Transported) else ParticipantProxy(name, endpoints)
        return Services(proxies, self.clock)

    # -- what ledgers ask --------------------------------------------------------------------
    def current_delivery(self) -> tuple[int, str]:
        return self._current, self._correlation

    def next_row_seq(self) -> int:
        self._row_seq += 1
        return self._row_seq - 1

    # -- the network -------------------------------------------------------------------------
    def _check_time(self, now: float) -> None:
        if now > self.saga.max_seconds:
            raise _Halted(f"still running after {self.saga.max_seconds:g} virtual seconds")

    def decide(self, ep: Endpoint) -> tuple[int, Fault | None]:
        """Count the call, decide its fault, let network latency pass."""
        self._deliveries += 1
        if self._deliveries > self.saga.max_deliveries:
            raise _Halted(f"made more than {self.saga.max_deliveries} calls")
        ep.calls += 1
        attempt = ep.calls
        self._rng = (self._rng * 6364136223846793005 + 1442695040888963407) & _MASK64
        now = self.clock._now + _LATENCY + (self._rng >> 11) * _JITTER / 9007199254740992.0
        self.clock._now = now
        if now > self.saga.max_seconds:
            raise _Halted(f"still running after {self.saga.max_seconds:g} virtual seconds")
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
        try:
            reply = fn(*args, **kwargs)
        except Exception as exc:
            trace[seq] = TraceEntry(
                seq, self.clock._now, ep.participant, ep.operation, attempt, self._correlation, key, request,
                "raised", f"{type(exc).__name__}: {exc}", None,
            )
            raise
        finally:
            self._current = previous
        trace[seq] = TraceEntry(seq, self.clock._now, ep.participant, ep.operation, attempt, self._correlation, key, request, "ok", reply, None)
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
        label = fault.label
        point = f"{ep.participant}.{ep.operation}#{attempt}"
        if kind in ("fail", "outage"):
            self._record(ep, attempt, key, request, "failed", None, label)
            raise ep.errors("connect", f"{point}: connection refused (injected {label})")
        if kind == "timeout":
            self._record(ep, attempt, key, request, "timed-out", None, label)
            clock._now += self.saga.call_timeout
            raise ep.errors("timeout", f"{point}: no reply within {self.saga.call_timeout:g}s (injected {label})")
        if kind == "lose-reply":
            try:
                yield from self._apply(ep, attempt, key, request, thunk, "reply-lost", label)
            except Exception:
                pass  # the caller never learns the participant failed: its reply is lost too
            clock._now += self.saga.call_timeout
            raise ep.errors("timeout", f"{point}: no reply within {self.saga.call_timeout:g}s (injected {label})")
        if kind == "crash":
            try:
                yield from self._apply(ep, attempt, key, request, thunk, "crashed", label)
            except Exception:
                pass  # it died before it could answer, whatever it would have answered
            restart = self.saga.restart_hook(ep.participant)
            assert restart is not None  # plans are validated: crash only where a step says how to restart
            restart(self.participants[ep.participant])
            raise ep.errors("reset", f"{point}: connection reset: {ep.participant} died before it replied (injected {label})")
        if kind == "refuse":
            refuse = ep.step.refuse
            assert refuse is not None  # plans are validated: refuse only where the step declares how
            refuse(self.participants[ep.participant])
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
            if fault.seconds < self.saga.call_timeout:
                clock._now += fault.seconds
                return (yield from self._apply(ep, attempt, key, request, thunk, "ok", label))
            self._record(ep, attempt, key, request, "held", None, label)
            self._hold(clock._now + fault.seconds, ep, attempt, key, request, thunk, label)
            clock._now += self.saga.call_timeout
            raise ep.errors("timeout", f"{point}: no reply within {self.saga.call_timeout:g}s (injected {label})")
        if kind == "pause" or kind == "frozen":
            # The call that froze the participant carries the pause; the others merely arrived
            # while it was frozen, and each waits in it until the thaw.
            if isinstance(fault, _Frozen):
                pause, thaw, label_here = fault.pause, fault.thaw, None
            else:
                assert isinstance(fault, Pause)
                pause, thaw, label_here = fault, clock._now + fault.seconds, label
                self._frozen[ep.participant] = (pause, thaw)
            if thaw - clock._now < self.saga.call_timeout:
                # Answered within the timeout, at the thaw: after what was waiting in it already.
                clock._now = thaw
                if self.pending:
                    yield from self._flush(thaw)
                return (yield from self._apply(ep, attempt, key, request, thunk, "ok", label_here))
            self._record(ep, attempt, key, request, "frozen", None, label_here)
            self._hold(thaw, ep, attempt, key, request, thunk, pause.label)
            clock._now += self.saga.call_timeout
            raise ep.errors("timeout", f"{point}: no reply within {self.saga.call_timeout:g}s ({ep.participant} frozen by injected {pause.label})")
        raise SagaDefinitionError(f"fault kind {kind!r} is not known to this world")  # pragma: no cover

    def _hold(self, due: float, ep: Endpoint, attempt: int, key: str | None, request: Any, thunk: Thunk, label: str) -> None:
        self.pending_order += 1
        heapq.heappush(self.pending, (due, self.pending_order, ep, attempt, key, request, thunk, label))

    def _flush(self, until: float | None) -> Generator[Thunk, Any, None]:
        """Land held requests and late copies that are due, oldest first, each at its due time
        (never before the entry it follows, so the trace's times never go back)."""
        clock = self.clock
        while self.pending and (until is None or self.pending[0][0] <= until):
            due, _, ep, attempt, key, request, thunk, label = heapq.heappop(self.pending)
            now = clock._now
            last = next((e.time for e in reversed(self.trace) if e is not None), 0.0)
            clock._now = max(due, last)
            try:
                yield from self._apply_quietly(ep, attempt, key, request, thunk, "late", label)
            finally:
                clock._now = max(now, clock._now) if until is None else now

    def _apply_quietly(self, ep: Endpoint, attempt: int, key: str | None, request: Any, thunk: Thunk, outcome: str, label: str | None) -> Generator[Thunk, Any, None]:
        try:
            yield from self._apply(ep, attempt, key, request, thunk, outcome, label)
        except Exception:
            pass  # nobody waits for the reply of a copy or a late request

    def _apply(self, ep: Endpoint, attempt: int, key: str | None, request: Any, thunk: Thunk, outcome: str, label: str | None) -> Generator[Thunk, Any, Any]:
        seq = len(self.trace)
        self.trace.append(None)  # reserve the slot: ledger rows written during the call point at it
        previous = self._current
        self._current = seq
        try:
            reply = yield thunk
        except Exception as exc:
            self.trace[seq] = TraceEntry(
                seq, self.clock._now, ep.participant, ep.operation, attempt, self._correlation, key, request,
                "raised", f"{type(exc).__name__}: {exc}", label,
            )
            raise
        finally:
            self._current = previous
        self.trace[seq] = TraceEntry(
            seq, self.clock._now, ep.participant, ep.operation, attempt, self._correlation, key, request,
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
        if self.async_mode:
            raise SagaDefinitionError(
                "an async saga called a participant synchronously; in an async saga use an async "
                "client (HttpParticipant(asynchronous=True))"
            )
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
        halted: str | None = None
        try:
            if saga.is_async:
                result = self._run_async()
            else:
                result = saga.run(self.services, saga.input)
                if inspect.isawaitable(result):
                    raise SagaDefinitionError(
                        f"saga {saga.name!r}: run returned an awaitable; declare it with 'async def'"
                    )
        except _Halted as stop:
            halted = str(stop)
        except SagaDefinitionError:
            raise
        except Exception as exc:
            error = exc
        # The network eventually delivers what it held, whether or not anyone still waits.
        if self.pending:
            try:
                if self.async_mode:
                    self._loop_run(self.adrive(self._flush(None)))
                else:
                    self.drive(self._flush(None))
            except _Halted as stop:
                halted = halted or str(stop)
        if halted:
            status = "halted"
        elif error is not None:
            status = "crashed"
        else:
            status_value = saga.outcome(result)
            status = status_value if isinstance(status_value, str) else repr(status_value)
        trace = tuple(e for e in self.trace if e is not None)
        ledgers = {name: tuple(getattr(obj, "ledger", ()) or ()) for name, obj in self.participants.items()}
        rows = tuple(sorted((r for rows in ledgers.values() for r in rows), key=lambda r: r.seq))
        return Execution(
            saga=saga,
            status=status,
            result=result,
            error=error,
            halted=halted,
            trace=trace,
            ledgers=ledgers,
            participants=self.participants,
            faults=tuple(self.injected),
            seed=self._seed,
            correlation_id=self._correlation,
            elapsed=self.clock._now,
            _rows=rows,
        )

    def _run_async(self) -> Any:
        self.async_mode = True
        return self._loop_run(self.saga.run(self.services, self.saga.input))

    def _loop_run(self, coro: Any) -> Any:
        loop = asyncio.new_event_loop()
        try:
            return loop.run_until_complete(coro)
        finally:
            loop.close()


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
    return World(saga, plan_chooser(plan), plan.seed).run()


