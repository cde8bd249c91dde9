"""Which faults a search may put at a delivery point: the alphabet, simplest first."""

from __future__ import annotations

from .._saga import Saga
from ._kinds import (
    COORDINATOR_CRASHES,
    Crash,
    Delay,
    Duplicate,
    FailBeforeEffect,
    FaultTemplate,
    LoseReply,
    Outage,
    Pause,
    Refuse,
    Timeout,
)

#: How much later than the call timeout a "late" copy or held request lands, as a multiple.
LATE_FACTOR = 30.0


def templates_for(saga: Saga, participant: str, operation: str) -> tuple[FaultTemplate, ...]:
    """Every fault a search tries at one operation, simplest first: shrinking moves towards the
    front of this list and the sweep tries it in this order."""
    late = saga.call_timeout * LATE_FACTOR
    out = [FaultTemplate(FailBeforeEffect), FaultTemplate(Timeout), FaultTemplate(LoseReply)]
    if (participant, operation) in saga.refusable:
        out.append(FaultTemplate(Refuse))
    out += [
        FaultTemplate(Duplicate, (("lag", 0.0),)),
        FaultTemplate(Duplicate, (("lag", late),)),
        FaultTemplate(Delay, (("seconds", saga.call_timeout / 2),)),
        FaultTemplate(Delay, (("seconds", late),)),
        FaultTemplate(Outage),
    ]
    if saga.pauses:
        # A participant frozen well past the call timeout: the call and its retries wait in it and
        # land after the saga has moved on (compensated, or given up).
        out.append(FaultTemplate(Pause, (("seconds", late),)))
    if participant in saga.restartable:
        out.append(FaultTemplate(Crash))
    if saga.durable is not None:
        # The coordinator dies at this call, before it goes out or after it was applied; a
        # fresh coordinator recovers from the saga's store.
        out += [FaultTemplate(cls) for cls in COORDINATOR_CRASHES]
    return tuple(out)


def alphabet(saga: Saga) -> dict[tuple[str, str], tuple[FaultTemplate, ...]]:
    return {op: templates_for(saga, *op) for op in sorted(saga.operations)}
