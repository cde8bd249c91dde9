"""Which faults a search may put at a delivery point: the alphabet, simplest first."""

from __future__ import annotations

from .._saga import Saga
from ._kinds import (
    COORDINATOR_CRASHES,
    Corrupt,
    Crash,
    Delay,
    Drop,
    Duplicate,
    FailBeforeEffect,
    FaultTemplate,
    LoseReply,
    Outage,
    Pause,
    Refuse,
    Switch,
    Timeout,
)

#: How much later than the call timeout a "late" copy or held request lands, as a multiple.
LATE_FACTOR = 30.0


def templates_for(saga: Saga, participant: str, operation: str) -> tuple[FaultTemplate, ...]:
    """Every fault a search tries at one operation, simplest first: shrinking moves towards the
    front of this list and the sweep tries it in this order."""
    if (participant, operation) in saga.events:
        return event_templates(saga)
    if saga.choreography is not None:
        return _message_templates(saga, participant, operation)
    timeout = _timeout_of(saga, participant, operation)
    late = timeout * LATE_FACTOR
    out = [FaultTemplate(FailBeforeEffect), FaultTemplate(Timeout), FaultTemplate(LoseReply)]
    if (participant, operation) in saga.refusable:
        out.append(FaultTemplate(Refuse))
    out += [
        FaultTemplate(Duplicate, (("lag", 0.0),)),
        FaultTemplate(Duplicate, (("lag", late),)),
        FaultTemplate(Delay, (("seconds", timeout / 2),)),
        FaultTemplate(Delay, (("seconds", late),)),
        FaultTemplate(Outage),
    ]
    if saga.pauses:
        # A participant frozen well past the call timeout: the call and its retries wait in it and
        # land after the saga has moved on (compensated, or given up).
        out.append(FaultTemplate(Pause, (("seconds", late),)))
    if participant in saga.restartable:
        out.append(FaultTemplate(Crash))
    if saga.durable is not None and not (saga.actors and saga.is_async):
        # The coordinator dies at this call, before it goes out or after it was applied; a
        # fresh coordinator recovers from the saga's store (among actors: the calling actor's).
        out += [FaultTemplate(cls) for cls in COORDINATOR_CRASHES]
    if saga.actors:
        # Another actor moves before this call goes out.
        out.append(FaultTemplate(Switch))
    return tuple(out)


def _timeout_of(saga: Saga, participant: str, operation: str) -> float:
    """How long the saga waits for a reply from this operation: its step's ``timeout=``, or the
    saga's ``call_timeout``."""
    for step in saga.steps:
        if step.participant == participant and operation in (step.action, step.compensation) and step.timeout is not None:
            return step.timeout
    return saga.call_timeout


def event_templates(saga: Saga) -> tuple[FaultTemplate, ...]:
    """What a search tries at an event's arrival, simplest first: lost, delivered twice (at once,
    then late), held a little, held past any wait (after the saga gave up on it), and every
    later one lost too."""
    wait = saga.deadline if saga.deadline is not None else saga.call_timeout * LATE_FACTOR
    return (
        FaultTemplate(Drop),
        FaultTemplate(Duplicate, (("lag", 0.0),)),
        FaultTemplate(Duplicate, (("lag", wait),)),
        FaultTemplate(Delay, (("seconds", saga.call_timeout),)),
        FaultTemplate(Delay, (("seconds", wait),)),
        FaultTemplate(Outage),
    )


def alphabet(saga: Saga) -> dict[tuple[str, str], tuple[FaultTemplate, ...]]:
    """The faults a search may put at each delivery point: the operations in sorted order (their
    position is an endpoint's slot), then the events the participants send."""
    table = {op: templates_for(saga, *op) for op in sorted(saga.operations)}
    for event in saga.events:
        table[event] = event_templates(saga)
    return table


def _message_templates(saga: Saga, participant: str, operation: str) -> tuple[FaultTemplate, ...]:
    """What a search tries where a choreography's message is delivered or published, simplest
    first: lost on the way (redelivered), processed with its acknowledgement lost (redelivered
    after the effect), refused for a business reason, delivered twice (at once, then late), held
    past the consumer's patience (redelivered, the held copy landing later), and the service
    crashing right after. Not an outage: no message outlives a consumer gone for good, so it only
    shows that bounded redelivery gives up."""
    late = saga.call_timeout * LATE_FACTOR
    out = [FaultTemplate(FailBeforeEffect), FaultTemplate(LoseReply)]
    if (participant, operation) in saga.refusable:
        out.append(FaultTemplate(Refuse))
    out += [
        FaultTemplate(Duplicate, (("lag", 0.0),)),
        FaultTemplate(Duplicate, (("lag", late),)),
        FaultTemplate(Delay, (("seconds", late),)),
    ]
    if participant in saga.restartable:
        out.append(FaultTemplate(Crash))
    if saga.choreography.handles(participant, operation):
        out.append(FaultTemplate(Corrupt))
    return tuple(out)
