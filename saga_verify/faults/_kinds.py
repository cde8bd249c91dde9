"""The fault alphabet: what the harness may decide at one delivery point."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from typing import Any, ClassVar

from ..errors import PlanError

_POINT_RE = re.compile(r"^([A-Za-z_][\w-]*)\.([A-Za-z_][\w-]*)(?:#([0-9]+))?$")
#: A delivery point as a plan file writes it (what the plan-file schema allows).
POINT_PATTERN = r"^[A-Za-z_][\w-]*\.[A-Za-z_][\w-]*(#[1-9][0-9]*)?$"


@dataclass(frozen=True, order=True)
class DeliveryPoint:
    """One place where a call can be disturbed: the n-th call of an operation of a participant."""

    participant: str
    """The participant's name, as the saga declares it (``"payment"``)."""
    operation: str
    """The operation called on it (``"charge"``, ``"refund"``)."""
    attempt: int = 1
    """1 for the first call of this operation in the execution, 2 for the next (a retry), ..."""

    def __str__(self) -> str:
        return f"{self.participant}.{self.operation}#{self.attempt}"

    @classmethod
    def parse(cls, text: object) -> DeliveryPoint:
        """Read ``"payment.charge#2"`` (attempt defaults to 1)."""
        if not isinstance(text, str):
            raise PlanError(f"a delivery point must be text like 'payment.charge#1', got {text!r}")
        match = _POINT_RE.match(text.strip())
        if match is None:
            raise PlanError(
                f"cannot read delivery point {text!r}: write participant.operation#attempt, "
                "for example 'payment.charge#1'"
            )
        attempt = int(match.group(3) or 1)
        if attempt < 1:
            raise PlanError(f"delivery point {text!r}: attempts count from 1")
        return cls(match.group(1), match.group(2), attempt)


@dataclass(frozen=True)
class Fault:
    """A decision at a delivery point; subclasses say which. Faults are data: they print, compare,
    sort and round-trip through JSON."""

    at: DeliveryPoint
    """Where the fault happens."""

    kind: ClassVar[str] = ""
    meaning: ClassVar[str] = ""
    tried_last: ClassVar[bool] = False
    """Searches try this kind after all the others (and extend plans that have it last): it
    reaches what they reach only through a whole participant, so the order, and what the
    searches find first, stays as it is for sagas whose bugs the simpler kinds show."""

    def __str__(self) -> str:
        return f"{self.label} at {self.at}"

    @cached_property
    def label(self) -> str:
        """The fault without its place: ``"duplicate lag=30"``."""
        return self.kind + "".join(f" {f.name}={_num(getattr(self, f.name))}" for f in fields(self)[1:])

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind, "at": str(self.at)}
        for f in fields(self)[1:]:
            data[f.name] = getattr(self, f.name)
        return data

    def moved_to(self, at: DeliveryPoint) -> Fault:
        """The same decision at another delivery point."""
        return replace(self, at=at)


def _num(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass(frozen=True)
class FailBeforeEffect(Fault):
    """The request never reaches the participant; the caller gets a connection error."""

    kind: ClassVar[str] = "fail"
    meaning: ClassVar[str] = "not delivered; caller sees a connection error"


@dataclass(frozen=True)
class Timeout(Fault):
    """The request is lost on the way; the caller waits out its timeout (no effect happened)."""

    kind: ClassVar[str] = "timeout"
    meaning: ClassVar[str] = "not delivered; caller times out (outcome unknown to it)"


@dataclass(frozen=True)
class LoseReply(Fault):
    """The participant applies the request, but its reply is lost: the caller times out.
    This is the unknown outcome behind most double charges and leaked charges."""

    kind: ClassVar[str] = "lose-reply"
    meaning: ClassVar[str] = "applied, reply lost; caller times out"


@dataclass(frozen=True)
class Crash(Fault):
    """The participant applies the request, then its process dies before it replies and comes
    back from what it keeps (its store): anything it held only in memory is gone. The caller sees
    the connection reset, an unknown outcome. Only for participants whose step says how they
    restart (a container killed and started again; in simulation, the object rebuilt from its
    saved state)."""

    kind: ClassVar[str] = "crash"
    meaning: ClassVar[str] = "applied, then the participant dies and restarts; caller sees a reset"
    tried_last: ClassVar[bool] = True


@dataclass(frozen=True)
class Refuse(Fault):
    """The participant legitimately refuses (card declined, out of stock): a business answer,
    not a technical failure. Only for steps that declare how their participant refuses."""

    kind: ClassVar[str] = "refuse"
    meaning: ClassVar[str] = "participant refuses for a business reason"


@dataclass(frozen=True)
class Duplicate(Fault):
    """The request is delivered twice; the copy lands ``lag`` virtual seconds after the original
    (0: at once; more than the saga's run: a late redelivery after compensation began)."""

    lag: float = 0.0
    """Virtual seconds between the original and the copy."""

    kind: ClassVar[str] = "duplicate"
    meaning: ClassVar[str] = "delivered twice"

    def __post_init__(self) -> None:
        _check_seconds(self, self.lag, "lag")


@dataclass(frozen=True)
class Delay(Fault):
    """The request is held ``seconds`` virtual seconds. Shorter than the call timeout: a slow reply.
    Longer: the caller times out and the request lands later, after whatever the saga did next."""

    seconds: float = 30.0
    """Virtual seconds the request is held in the network."""

    kind: ClassVar[str] = "delay"
    meaning: ClassVar[str] = "held in the network, then delivered"

    def __post_init__(self) -> None:
        _check_seconds(self, self.seconds, "seconds")


@dataclass(frozen=True)
class Pause(Fault):
    """The participant freezes as this request reaches it and thaws ``seconds`` virtual seconds
    later: a partition, a stop-the-world pause, a container paused. Every call that reaches it
    meanwhile (this one included) waits in it, in arrival order; a caller whose wait would pass
    the call timeout times out, and its request is applied all the same when the participant
    thaws, after whatever the saga did next. Calls to other participants go on as usual."""

    seconds: float = 30.0
    """Virtual seconds the participant stays frozen."""

    kind: ClassVar[str] = "pause"
    meaning: ClassVar[str] = "participant frozen; every call reaching it waits, then lands at the thaw"
    tried_last: ClassVar[bool] = True

    def __post_init__(self) -> None:
        _check_seconds(self, self.seconds, "seconds")


@dataclass(frozen=True)
class Outage(Fault):
    """From this attempt on, every call of the operation fails before effect: a permanent failure
    (for a compensation: the refund that can never be made)."""

    kind: ClassVar[str] = "outage"
    meaning: ClassVar[str] = "this and every later attempt fails before effect"


@dataclass(frozen=True)
class Drop(Fault):
    """An event (a webhook, an approval) is lost on its way to the saga: it was sent, and the
    saga never receives it. Only at an event's arrival."""

    kind: ClassVar[str] = "drop"
    meaning: ClassVar[str] = "an event is lost on its way; the saga never receives it"


#: The kinds a plan may put at an event's arrival (``payment.paid#1``): an event can be lost,
#: delivered twice, held; an outage loses this and every later one.
EVENT_KINDS: frozenset[str] = frozenset({"drop", "duplicate", "delay", "outage"})


@dataclass(frozen=True)
class CoordinatorCrashBefore(Fault):
    """The coordinator (the process running the saga) dies just before it sends this request: the
    request never goes out. A fresh coordinator, with nothing of the dead one's memory, opens the
    saga's durable store and recovers. Only for sagas that declare how they recover
    (``Saga(durable=...)``)."""

    kind: ClassVar[str] = "coordinator-crash-before"
    meaning: ClassVar[str] = "the coordinator dies before sending; a fresh one recovers from its store"


@dataclass(frozen=True)
class CoordinatorCrashAfter(Fault):
    """The participant applies the request, and the coordinator dies before it reads the reply: the
    moment between a call and the log write that records it. A fresh coordinator recovers from
    the saga's durable store. Only for sagas that declare how they recover."""

    kind: ClassVar[str] = "coordinator-crash-after"
    meaning: ClassVar[str] = "applied, then the coordinator dies before reading the reply; a fresh one recovers"


#: The kinds that kill the coordinator rather than disturb one call.
COORDINATOR_CRASHES: tuple[type[Fault], ...] = (CoordinatorCrashBefore, CoordinatorCrashAfter)


def _check_seconds(fault: Fault, value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PlanError(f"{fault.kind} at {fault.at}: {name} must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise PlanError(f"{fault.kind} at {fault.at}: {name} must be finite and >= 0, got {value!r}")


#: Every fault kind, simplest first: searches try them and shrink towards them in this order.
@dataclass(frozen=True)
class Switch(Fault):
    """The actor making this call stops just before it goes out, and the next unfinished actor of
    the execution moves until it ends or reaches a switch of its own; the call goes out when the
    turn comes back. An interleaving, not a failure: two orders racing for the last unit, a
    takeover while the first coordinator is still running. Only for sagas that declare other
    actors (``Saga(actors=...)``)."""

    kind: ClassVar[str] = "switch"
    meaning: ClassVar[str] = "the actor making the call stops before it goes out; the next actor moves"


@dataclass(frozen=True)
class Corrupt(Fault):
    """The message arrives mangled (cut off half-way): a poison message its consumer cannot read,
    at this delivery and every redelivery to the same handler. Only where a choreography's handler
    receives a message (``Choreography``)."""

    kind: ClassVar[str] = "corrupt"
    meaning: ClassVar[str] = "the message arrives mangled: a poison message for its consumer"


FAULT_KINDS: tuple[type[Fault], ...] = (
    FailBeforeEffect,
    Drop,
    Timeout,
    LoseReply,
    Refuse,
    Duplicate,
    Delay,
    Outage,
    # Last: they disturb a whole participant rather than one call (see Fault.tried_last).
    Pause,
    Crash,
    # Only for sagas that declare a durable store and how they recover, where they are the faults
    # that matter most: not tried last.
    CoordinatorCrashBefore,
    CoordinatorCrashAfter,
    # Only for sagas with several actors. Last, so that the order (and the ranks shrinking goes
    # by) of every other kind stays as it is.
    Switch,
    # Only where a choreography's handler receives a message; last for the same reason.
    Corrupt,
)
KIND_BY_NAME: dict[str, type[Fault]] = {k.kind: k for k in FAULT_KINDS}


def fault_from_json(data: object, where: str = "fault") -> Fault:
    """Read one fault from its JSON form; errors name the offending field."""
    if not isinstance(data, dict):
        raise PlanError(f"{where}: expected an object like {{'kind': 'fail', 'at': 'payment.charge#1'}}, got {data!r}")
    kind_name = data.get("kind")
    cls = KIND_BY_NAME.get(kind_name) if isinstance(kind_name, str) else None
    if cls is None:
        known = ", ".join(KIND_BY_NAME)
        raise PlanError(f"{where}: unknown fault kind {kind_name!r}; known kinds: {known}")
    if "at" not in data:
        raise PlanError(f"{where}: missing 'at' (the delivery point, e.g. 'payment.charge#1')")
    if not isinstance(data["at"], str) or not re.match(POINT_PATTERN, data["at"]):
        raise PlanError(f"{where}: cannot read delivery point {data['at']!r}: write participant.operation#attempt, for example 'payment.charge#1'")
    allowed = {f.name for f in fields(cls)} - {"at"}
    extra = set(data) - allowed - {"kind", "at"}
    if extra:
        raise PlanError(f"{where}: {cls.kind} takes no field(s) {sorted(extra)}; it takes {sorted(allowed) or 'none'}")
    params = {name: data[name] for name in allowed if name in data}
    try:
        return cls(DeliveryPoint.parse(data["at"]), **params)
    except PlanError as exc:
        raise PlanError(f"{where}: {exc}") from None


@dataclass(frozen=True)
class FaultTemplate:
    """A fault without its place: what a search may put at any delivery point."""

    cls: type[Fault]
    params: tuple[tuple[str, float], ...] = field(default=())

    def at(self, point: DeliveryPoint) -> Fault:
        return self.cls(point, **dict(self.params))

    def __str__(self) -> str:
        return self.cls.kind + "".join(f" {k}={_num(v)}" for k, v in self.params)
