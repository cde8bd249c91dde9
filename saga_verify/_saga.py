"""What a user hands saga-verify: the saga's steps, its participants and the code that runs it."""

from __future__ import annotations

import importlib
import inspect
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Protocol, cast

from ._system import System, check_system_covers
from .errors import SagaDefinitionError


class InvariantLike(Protocol):
    """What a saga's ``invariants`` hold (`saga_verify.invariants.Invariant`): a name, and a call
    on a finished execution that gives the violations found. Declared here, not imported, so that
    the values a user writes sit below the world that runs them."""

    @property
    def name(self) -> str: ...

    def __call__(self, execution: Any, /) -> Sequence[Any]: ...

#: Names a participant may not take: they are attributes of the services object.
RESERVED_NAMES = frozenset({"clock", "retry", "aretry", "wait_for", "await_for", "deadline"})
TERMINAL_STATUSES = ("completed", "compensated", "failed")
_NAME_RE = re.compile(r"^[A-Za-z_][\w-]*$")
_REF_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_STEP_RE = re.compile(r"^[A-Za-z_][\w-]*\.[A-Za-z_][\w-]*$")


@dataclass(frozen=True)
class Step:
    """One step of a saga: a participant's action and the compensation that undoes it."""

    participant: str
    """The participant that performs the step (``"payment"``)."""
    action: str
    """The operation that does the step (``"charge"``)."""
    compensation: str | None = None
    """The operation that semantically undoes it (``"refund"``); None for an irreversible step."""
    refuse: Callable[[Any], None] | None = None
    """How to make the participant refuse its next call of ``action`` for a business reason
    (declined card, out of stock). Called with the participant object; enables the refuse fault."""
    restart: Callable[[Any], None] | None = None
    """How to kill the participant and bring it back from what it keeps (its store), called with
    the participant object; enables the crash fault at every operation of the participant."""
    depends_on: str | Sequence[str] | None = None
    """The earlier steps (``"participant.action"``) that must take effect before this one: None
    means the step before it, ``()`` none (a step a library may run concurrently with others)."""
    timeout: float | None = None
    """Virtual seconds the saga waits for a reply to each call of this step's operations before
    it times out; None means the saga's ``call_timeout``."""
    retries: int | None = None
    """The step's retry budget: at most this many calls of ``action`` after the first (what
    ``services.retry`` allows, and what the ``retry_budget`` invariant holds the saga to)."""
    backoff: float = 0.5
    """Virtual seconds ``services.retry`` waits before the first retry; doubled for each next one."""
    max_backoff: float = 8.0
    """The longest wait between two retries: the back-off is bounded here."""
    events: str | Sequence[str] = ()
    """The events the step's participant sends the saga on its own (a payment webhook, an
    approval), which the saga awaits with ``services.wait_for``. Each arrival is a delivery point
    (``payment.paid#1``) that a plan may delay, duplicate or drop."""

    def __post_init__(self) -> None:
        for label, value in (("participant", self.participant), ("action", self.action)):
            if not isinstance(value, str) or not _NAME_RE.match(value):
                raise SagaDefinitionError(f"Step {label} must be a plain name like 'payment', got {value!r}")
        if self.compensation is not None and (
            not isinstance(self.compensation, str) or not _NAME_RE.match(self.compensation)
        ):
            raise SagaDefinitionError(f"Step compensation must be a plain name or None, got {self.compensation!r}")
        if self.refuse is not None and not callable(self.refuse):
            raise SagaDefinitionError(f"Step refuse= must be callable, got {self.refuse!r}")
        if self.restart is not None and not callable(self.restart):
            raise SagaDefinitionError(f"Step restart= must be callable, got {self.restart!r}")
        if self.depends_on is not None:
            names = (self.depends_on,) if isinstance(self.depends_on, str) else self.depends_on
            if not isinstance(names, Sequence) or not all(isinstance(n, str) and _STEP_RE.match(n) for n in names):
                raise SagaDefinitionError(
                    f"Step depends_on= takes step names like 'payment.charge' (or a list of them), got {self.depends_on!r}"
                )
            object.__setattr__(self, "depends_on", tuple(names))
        _check_timing(self)

    @property
    def event_names(self) -> tuple[str, ...]:
        """The events the step's participant sends, as a tuple."""
        return cast(tuple[str, ...], self.events)

    @property
    def irreversible(self) -> bool:
        """True when nothing undoes the step (a notification): it must come last."""
        return self.compensation is None

    def __str__(self) -> str:
        return f"{self.participant}.{self.action}"


def _check_timing(step: Step) -> None:
    """Check a step's timing declarations (timeout, retry budget, back-off, events)."""
    for label, value in (("timeout", step.timeout), ("backoff", step.backoff), ("max_backoff", step.max_backoff)):
        if value is None and label == "timeout":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise SagaDefinitionError(f"Step {step.participant}.{step.action}: {label}= must be a positive number of seconds, got {value!r}")
    if step.max_backoff < step.backoff:
        raise SagaDefinitionError(
            f"Step {step.participant}.{step.action}: max_backoff= ({step.max_backoff!r}) is below backoff= ({step.backoff!r})"
        )
    if step.retries is not None and (isinstance(step.retries, bool) or not isinstance(step.retries, int) or step.retries < 0):
        raise SagaDefinitionError(f"Step {step.participant}.{step.action}: retries= must be a whole number >= 0, got {step.retries!r}")
    names = (step.events,) if isinstance(step.events, str) else step.events
    if not isinstance(names, Sequence) or not all(isinstance(n, str) and _NAME_RE.match(n) for n in names):
        raise SagaDefinitionError(
            f"Step {step.participant}.{step.action}: events= takes event names like 'paid' (or a list of them), got {step.events!r}"
        )
    clash = {step.action, step.compensation} & set(names)
    if clash:
        raise SagaDefinitionError(
            f"Step {step.participant}.{step.action}: event {sorted(n for n in clash if n)[0]!r} has the name of an operation; name events apart"
        )
    object.__setattr__(step, "events", tuple(names))


@dataclass(frozen=True)
class Durable:
    """How a saga's coordinator persists and recovers, which lets the search crash the coordinator
    itself. The saga reaches its store as ``services.store``."""

    store: Callable[[], Any]
    """Opens the store for one execution (an empty database, a fresh log)."""
    recover: Callable[[Any, Any], Any] | None = None
    """What a fresh coordinator runs after a crash, ``recover(services, input) -> outcome``
    (may be ``async def``); None: ``run`` again, for a saga that resumes by re-running."""
    reopen: Callable[[Any], Any] | None = None
    """Brings the store back after a crash, given the dead coordinator's: what its process held in
    memory (an open transaction) is lost, what it committed is kept. Returns the store the fresh
    coordinator sees; None: the same object."""
    close: Callable[[Any], None] | None = None
    """Closes the store when the execution is over."""
    owned: Callable[[Any, str, float], bool] | None = None
    """Whether a saga instance is provably still owned when the execution is over,
    ``owned(store, instance_id, now) -> bool`` (a live lease in the store): such an instance may
    be unfinished without breaking `saga_owned`. None: an unfinished instance has no owner."""

    def __post_init__(self) -> None:
        if not callable(self.store):
            raise SagaDefinitionError(f"Durable store= must be callable (it opens the store), got {self.store!r}")
        for label in ("recover", "reopen", "close", "owned"):
            value = getattr(self, label)
            if value is not None and not callable(value):
                raise SagaDefinitionError(f"Durable {label}= must be callable or None, got {value!r}")


@dataclass(frozen=True)
class Actor:
    """Another actor of an execution, beside the saga's own instance: a second order (another
    input), the same start command delivered again (the same input), or a second coordinator
    taking over (``run=`` its recovery, ``start=`` after the lease expired). The plan's
    ``switch`` faults decide, at each delivery point, which actor moves (`saga_verify.faults.Switch`)."""

    name: str
    """Shown on the timeline; distinct from the other actors' and from the saga instance's id."""
    input: Any = None
    """What the actor's ``run`` receives (an order)."""
    run: Callable[[Any, Any], Any] | None = None
    """What the actor runs, ``run(services, input) -> outcome``; None: the saga's ``run``."""
    correlation_id: str | None = None
    """The saga instance it works on; defaults to ``input['order_id']`` when there is one, else
    its name."""
    start: float = 0.0
    """Virtual seconds before which it does not begin: when its first turn comes earlier, the
    clock moves on to this."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise SagaDefinitionError(f"Actor name must be non-empty text, got {self.name!r}")
        if self.run is not None and not callable(self.run):
            raise SagaDefinitionError(f"Actor {self.name!r}: run must be callable as run(services, input) or None")
        if self.correlation_id is not None and (not isinstance(self.correlation_id, str) or not self.correlation_id):
            raise SagaDefinitionError(f"Actor {self.name!r}: correlation_id must be non-empty text or None, got {self.correlation_id!r}")
        start = self.start
        if isinstance(start, bool) or not isinstance(start, (int, float)) or not math.isfinite(start) or start < 0:
            raise SagaDefinitionError(f"Actor {self.name!r}: start must be a number of virtual seconds >= 0, got {start!r}")

    def instance_id(self, saga: Saga) -> str:
        """The correlation id of the saga instance this actor works on."""
        if self.correlation_id:
            return self.correlation_id
        if isinstance(self.input, Mapping) and isinstance(self.input.get("order_id"), str):
            return str(self.input["order_id"])
        return self.name


def _default_outcome(result: object) -> object:
    if isinstance(result, str):
        return result
    if isinstance(result, Mapping):
        return result.get("status")
    return getattr(result, "status", result)


@dataclass(frozen=True, eq=False)
class Saga:
    """A saga under test. ``run(services, input)`` is the business code; it calls participants as
    ``services.<participant>.<operation>(...)`` and reads time from ``services.clock``, and
    returns its outcome: ``"completed"``, ``"compensated"`` or ``"failed"`` (gave up, needs an
    operator), or an object whose ``status`` is one of them."""

    name: str
    """Shown in reports and used to key the example database."""
    steps: Sequence[Step]
    """The forward steps in order; compensations run in reverse."""
    participants: Callable[[], Mapping[str, object]] | System
    """Builds fresh participants for one execution: name -> object (or `HttpParticipant`); or
    the `System` whose services they are, placed on the runtime a search is asked to use."""
    run: Callable[[Any, Any], Any]
    """The saga's code: ``run(services, input) -> outcome``. May be ``async def``."""
    input: Any = None
    """What ``run`` receives as its second argument (an order)."""
    correlation_id: str | None = None
    """Ties trace entries and ledger rows to this saga instance; defaults to ``input['order_id']``
    when there is one, else the saga's name."""
    invariants: Sequence[InvariantLike] | None = None
    """What must hold; None means `standard_invariants` for these steps."""
    call_timeout: float = 1.0
    """Virtual seconds a caller waits before a lost request or reply becomes a timeout."""
    max_deliveries: int = 200
    """An execution that makes more calls than this has not terminated."""
    max_seconds: float = 3600.0
    """An execution that runs longer than this (virtual time) has not terminated."""
    outcome: Callable[[Any], object] = field(default=_default_outcome)
    """Maps what ``run`` returns to a status; override when the saga speaks other words."""
    ref: str | None = None
    """Where this saga can be imported from, ``"package.module:attribute"``, so that a plan file
    replays on its own (`load_saga` fills it in)."""
    pauses: bool = False
    """Whether searches also try the ``pause`` fault (a participant frozen well past the call
    timeout). Off by default: one pause holds every call to its participant, so, counted in
    faults, it would stand in for the call-level faults (a lost reply, then an outage) that
    explain most bugs better. Plans, replays and every runtime take pauses either way."""
    virtual_time: bool = True
    """Whether the clocks the saga's code and its libraries read run on the execution's virtual
    clock: ``time.sleep``, ``time.monotonic``, ``time.time``, ``datetime.now`` and, in an
    ``async def`` saga, ``asyncio.sleep`` and every timer of its event loop. Turn it off for a
    saga that must see real time (then a sleep really waits)."""
    max_real_seconds: float = 60.0
    """Real (wall-clock) seconds after which an execution that has not returned is stopped from
    outside: the saga waits on something the harness does not own (a thread, a lock, real I/O, a
    busy loop), and the search fails with `SagaStuckError` saying where."""
    deadline: float | None = None
    """Virtual seconds from the start by which the saga must have settled: past it, it may only
    compensate, and it must end compensated, or failed and flagged for a person (the
    ``within_deadline`` invariant). None: no deadline."""
    durable: Durable | None = None
    """How the coordinator persists and recovers; then searches also crash the coordinator and
    run recovery on a fresh one (``services.store`` is the store)."""
    actors: Sequence[Actor] = ()
    """The actors of an execution besides the saga's own instance (``input``): other orders, the
    same start delivered again, a second coordinator taking over. Then searches also try
    ``switch`` faults, which decide who moves at each delivery point (see ``_world._actors``)."""
    choreography: Any = None
    """The `saga_verify.Choreography` this saga was made from (`Choreography.saga`): then the bus
    drives the execution instead of ``run`` (see ``_world._bus``)."""
    real_time: bool = False
    """True when its executions run on real time against something real whose timing the harness
    does not own (a broker and services of their own, `saga_verify.broker.NatsServices`): the same
    plan must then give the same verdict (status and broken invariants), not the same trace."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise SagaDefinitionError(f"Saga name must be non-empty text, got {self.name!r}")
        if not self.steps:
            raise SagaDefinitionError(f"saga {self.name!r} has no steps; give it at least one Step")
        object.__setattr__(self, "steps", tuple(self.steps))
        for step in self.steps:
            if not isinstance(step, Step):
                raise SagaDefinitionError(f"saga {self.name!r}: steps must be Step values, got {step!r}")
            if step.participant in RESERVED_NAMES or (self.durable is not None and step.participant == "store"):
                raise SagaDefinitionError(
                    f"saga {self.name!r}: participant name {step.participant!r} is reserved "
                    f"(services.{step.participant} is the harness's); rename it"
                )
        seen: set[tuple[str, str]] = set()
        for step in self.steps:
            for op in filter(None, (step.action, step.compensation)):
                if (step.participant, op) in seen:
                    raise SagaDefinitionError(
                        f"saga {self.name!r}: {step.participant}.{op} appears twice in the steps; "
                        "each operation belongs to one step"
                    )
                seen.add((step.participant, op))
        for step in self.steps:
            for event in step.event_names:
                if (step.participant, event) in seen:
                    raise SagaDefinitionError(
                        f"saga {self.name!r}: {step.participant}.{event} is declared twice, or as an event and an operation; "
                        "each name of a participant is one operation or one event"
                    )
                seen.add((step.participant, event))
        if isinstance(self.participants, System):
            check_system_covers(self.participants, self.name, self.participant_names, self.operations)
        elif not callable(self.participants):
            raise SagaDefinitionError(
                f"saga {self.name!r}: participants must be a callable returning a mapping, or a saga_verify.System"
            )
        if self.ref is not None and (not isinstance(self.ref, str) or not _REF_RE.match(self.ref)):
            raise SagaDefinitionError(f"saga {self.name!r}: ref must look like 'package.module:attribute', got {self.ref!r}")
        if not callable(self.run):
            raise SagaDefinitionError(f"saga {self.name!r}: run must be callable as run(services, input)")
        for label, value in (
            ("call_timeout", self.call_timeout),
            ("max_seconds", self.max_seconds),
            ("max_real_seconds", self.max_real_seconds),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise SagaDefinitionError(f"saga {self.name!r}: {label} must be a positive number, got {value!r}")
        if self.deadline is not None and (
            isinstance(self.deadline, bool) or not isinstance(self.deadline, (int, float)) or not math.isfinite(self.deadline) or self.deadline <= 0
        ):
            raise SagaDefinitionError(f"saga {self.name!r}: deadline must be a positive number of seconds or None, got {self.deadline!r}")
        for label, flag in (("pauses", self.pauses), ("virtual_time", self.virtual_time)):
            if not isinstance(flag, bool):
                raise SagaDefinitionError(f"saga {self.name!r}: {label} must be True or False, got {flag!r}")
        if self.durable is not None and not isinstance(self.durable, Durable):
            raise SagaDefinitionError(f"saga {self.name!r}: durable must be a saga_verify.Durable, got {self.durable!r}")
        _check_actors(self)
        self.dependencies  # noqa: B018  # checked now: a step naming an unknown or later step is a definition error
        if isinstance(self.max_deliveries, bool) or not isinstance(self.max_deliveries, int) or self.max_deliveries < 1:
            raise SagaDefinitionError(
                f"saga {self.name!r}: max_deliveries must be a positive whole number, got {self.max_deliveries!r}"
            )

    @cached_property
    def operations(self) -> frozenset[tuple[str, str]]:
        """Every (participant, operation) the saga may call: actions and compensations."""
        ops = {(s.participant, s.action) for s in self.steps}
        ops |= {(s.participant, s.compensation) for s in self.steps if s.compensation}
        return frozenset(ops)

    @cached_property
    def events(self) -> tuple[tuple[str, str], ...]:
        """Every (participant, event) the saga's participants send it, sorted: their arrivals are
        delivery points after the operations' own."""
        return tuple(sorted((s.participant, e) for s in self.steps for e in s.event_names))

    @cached_property
    def dependencies(self) -> tuple[tuple[int, ...], ...]:
        """For each step (by position), the positions of the steps it depends on directly."""
        position = {str(step): i for i, step in enumerate(self.steps)}
        out: list[tuple[int, ...]] = []
        for i, step in enumerate(self.steps):
            if step.depends_on is None:
                out.append((i - 1,) if i else ())
                continue
            found = []
            for name in step.depends_on:
                j = position.get(str(name))
                if j is None:
                    raise SagaDefinitionError(
                        f"saga {self.name!r}: step {step} depends on {name}, which is no step of this saga; "
                        f"its steps: {', '.join(position)}"
                    )
                if j >= i:
                    raise SagaDefinitionError(
                        f"saga {self.name!r}: step {step} depends on {name}, which does not come before it; "
                        "list the steps so that each comes after what it depends on"
                    )
                found.append(j)
            out.append(tuple(sorted(set(found))))
        return tuple(out)

    def depends(self, later: int, earlier: int) -> bool:
        """Whether step ``later`` depends on step ``earlier``, directly or through others."""
        todo = list(self.dependencies[later])
        seen: set[int] = set()
        while todo:
            j = todo.pop()
            if j == earlier:
                return True
            if j not in seen:
                seen.add(j)
                todo.extend(self.dependencies[j])
        return False

    @cached_property
    def refusable(self) -> frozenset[tuple[str, str]]:
        return frozenset((s.participant, s.action) for s in self.steps if s.refuse is not None)

    @cached_property
    def restartable(self) -> frozenset[str]:
        """The participants some step says how to restart (the crash fault may hit them)."""
        return frozenset(s.participant for s in self.steps if s.restart is not None)

    def restart_hook(self, participant: str) -> Callable[[Any], None] | None:
        return next((s.restart for s in self.steps if s.participant == participant and s.restart is not None), None)

    @cached_property
    def participant_names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.participant for s in self.steps))

    @cached_property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.run)

    @cached_property
    def layout(self) -> tuple[tuple[str, tuple[tuple[Step, str, int], ...]], ...]:
        """Per participant, its operations as (step, operation, slot); slot numbers the saga's
        operations in sorted order. Computed once per saga: every execution builds on it."""
        slots = {op: i for i, op in enumerate(sorted(self.operations))}
        out = []
        for name in self.participant_names:
            ops = []
            for step in self.steps:
                if step.participant == name:
                    ops += [(step, op, slots[(name, op)]) for op in filter(None, (step.action, step.compensation))]
            out.append((name, tuple(ops)))
        return tuple(out)

    @cached_property
    def instance_id(self) -> str:
        """The correlation id of the one saga instance an execution runs."""
        if self.correlation_id:
            return self.correlation_id
        if isinstance(self.input, Mapping) and isinstance(self.input.get("order_id"), str):
            return str(self.input["order_id"])
        return self.name

    def __repr__(self) -> str:
        return f"Saga({self.name!r}, steps={[str(s) for s in self.steps]})"


def _check_actors(saga: Saga) -> None:
    object.__setattr__(saga, "actors", tuple(saga.actors))
    names = {saga.instance_id}
    for actor in saga.actors:
        if not isinstance(actor, Actor):
            raise SagaDefinitionError(f"saga {saga.name!r}: actors must be saga_verify.Actor values, got {actor!r}")
        if actor.name in names:
            raise SagaDefinitionError(
                f"saga {saga.name!r}: actor name {actor.name!r} is taken (by another actor, or by the saga's own "
                "instance, named by its correlation id); give each actor a name of its own"
            )
        names.add(actor.name)
        run = actor.run if actor.run is not None else saga.run
        if inspect.iscoroutinefunction(run) != saga.is_async:
            raise SagaDefinitionError(
                f"saga {saga.name!r}: actor {actor.name!r} runs {'an async' if inspect.iscoroutinefunction(run) else 'a plain'} "
                f"function beside {'an async' if saga.is_async else 'a plain'} saga; the actors of one execution are all "
                "'async def' or none is"
            )


def load_saga(ref: str) -> Saga:
    """Import a saga from ``package.module:attribute``; errors say what is missing."""
    if not isinstance(ref, str) or ":" not in ref:
        raise SagaDefinitionError(f"cannot load saga {ref!r}: write it as package.module:attribute")
    module_name, _, attr = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SagaDefinitionError(f"cannot load saga {ref!r}: module {module_name!r} does not import ({exc})") from None
    try:
        value = getattr(module, attr)
    except AttributeError:
        raise SagaDefinitionError(f"cannot load saga {ref!r}: module {module_name!r} has no {attr!r}") from None
    if not isinstance(value, Saga):
        raise SagaDefinitionError(f"{ref!r} is a {type(value).__name__}, not a saga_verify.Saga")
    if value.ref is None:
        # Plan files of this saga name where it came from, so that they replay on their own.
        value = replace(value, ref=ref)
    return value
