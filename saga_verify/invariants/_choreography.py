"""The invariants of a choreography, read from what its bus did: every saga settles, every event is
correlated and caused, nothing published is lost, and the dead-letter queue holds only poison."""

from __future__ import annotations

from collections.abc import Mapping

from .._saga import TERMINAL_STATUSES
from .._world import Execution
from .._world._bus import BusRecord
from ._core import Invariant, Violation


def _record(execution: Execution) -> BusRecord | None:
    return execution.bus


def _settles(execution: Execution) -> Violation | None:
    record = _record(execution)
    if execution.halted:
        return Violation(f"the choreography never went quiet: it {execution.halted}", tuple(execution.trace[-3:]))
    if execution.status in TERMINAL_STATUSES or execution.status == "crashed":
        return None
    if record is not None and record.dead_letters:
        return None  # a message of the saga waits for a person in the dead-letter queue
    if record is not None and not record.messages:
        return None  # its start never took effect: no saga began
    return Violation(
        f"the bus went quiet with the saga {execution.correlation_id} at {execution.status!r}, not one of "
        f"{', '.join(TERMINAL_STATUSES)}, and nothing of it in the dead-letter queue: it is stuck for good"
    )


settles = Invariant(
    "settles",
    _settles,
    "when the bus is quiet the saga is in a terminal state, or a message of it waits in the dead-letter queue for a "
    "person, or it never began (its start took no effect)",
)


def _correlated_events(execution: Execution) -> list[Violation]:
    record = _record(execution)
    if record is None:
        return []
    out: list[Violation] = []
    seen: set[str] = set()
    first: dict[str, str] = {}
    for message in record.messages:
        envelope = message.envelope
        if not isinstance(envelope, Mapping):
            out.append(Violation(f"{message.source} published something that is not an envelope: {envelope!r}"))
            continue
        corr, cause = envelope.get("correlation_id"), envelope.get("causation_id")
        what = f"{message.source}'s {message.type} {message.id}"
        if not isinstance(corr, str) or not corr:
            out.append(Violation(f"{what} carries no correlation id: no one can tell which saga it belongs to"))
        elif corr != execution.correlation_id:
            out.append(Violation(f"{what} carries correlation id {corr!r}, not its saga's {execution.correlation_id!r}"))
        if cause is None:
            earlier = first.setdefault(str(corr), message.id)
            if earlier != message.id:
                out.append(Violation(f"{what} names no cause, and only the saga's first event ({earlier}) may"))
        elif cause not in seen:
            out.append(Violation(f"{what} names cause {cause!r}, which no event published before it has as id"))
        seen.add(message.id)
    return out


correlated_events = Invariant(
    "correlated_events",
    _correlated_events,
    "every event carries its saga's correlation id, and a causation id naming an event published before it (the first excepted)",
)


def _nothing_lost(execution: Execution) -> list[Violation]:
    record = _record(execution)
    if record is None or execution.halted:
        return []
    return [
        Violation(f"{d} was published, and neither processed nor dead-lettered ({d.attempts} deliveries)")
        for d in record.deliveries
        if d.state == "pending"
    ]


nothing_lost = Invariant(
    "nothing_lost",
    _nothing_lost,
    "every published event reached each of its subscribers: processed, or parked in the dead-letter queue",
)


def _dead_letters_are_poison(execution: Execution) -> list[Violation]:
    record = _record(execution)
    if record is None:
        return []
    return [
        Violation(
            f"{d.message.type} {d.message.id} for {d.handler.service}.{d.handler.method} was dead-lettered, but nothing was "
            f"wrong with it: only injected faults failed its {d.attempts} deliveries ({d.reason})"
        )
        for d in record.dead_letters
        if not d.poison
    ]


dead_letters_are_poison = Invariant(
    "dead_letters_are_poison",
    _dead_letters_are_poison,
    "the dead-letter queue holds only messages that cannot be processed, never a healthy one the bus gave up on",
)


def choreography_invariants() -> tuple[Invariant, ...]:
    """What every choreography must hold, whatever its services do."""
    return (settles, correlated_events, nothing_lost, dead_letters_are_poison)
