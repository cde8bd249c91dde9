"""Invariants about coordinator crashes: what a saga that recovers from its store must keep. (That
no effect is duplicated across a crash is `no_double_effect`, which counts across coordinators.)"""

from __future__ import annotations

from .._saga import TERMINAL_STATUSES
from .._world import Execution, TraceEntry
from .._world._coordinator import CRASH_OUTCOMES
from ._core import Invariant, Violation

_LANDED = frozenset({"late", "copy"})


def _crashes(execution: Execution) -> list[TraceEntry]:
    return [e for e in execution.trace if e.outcome in CRASH_OUTCOMES]


def _compensation_resumed(execution: Execution) -> list[Violation]:
    crashes = _crashes(execution)
    if not crashes:
        return []
    saga = execution.saga
    compensations = {(s.participant, s.compensation) for s in saga.steps if s.compensation}
    calls = [e for e in execution.trace if e.outcome not in _LANDED]
    found = []
    # Per saga instance (among actors, a crash kills the coordinator of one of them): the last
    # crash that hit a coordinator of the instance which had begun to compensate it; after it,
    # some coordinator must take the compensation up again.
    for corr, effects in execution.effects.items():
        mine = [e for e in calls if e.correlation_id == corr]
        interrupted = None
        for crash in crashes:
            if crash.correlation_id == corr and any(e.seq <= crash.seq and (e.participant, e.operation) in compensations for e in mine):
                interrupted = crash
        if interrupted is None:
            continue
        for step in (s for s in saga.steps if s.compensation):
            forward = effects.get((step.participant, step.action), [])
            undo = effects.get((step.participant, step.compensation or ""), [])
            if len(forward) <= len(undo):
                continue
            retried = any(
                e.seq > interrupted.seq and e.participant == step.participant and e.operation == step.compensation for e in mine
            )
            if not retried:
                found.append(
                    Violation(
                        f"the coordinator crashed at {interrupted.point} while compensating {corr}, and no coordinator "
                        f"resumed it: {step} is still in effect and {step.participant}.{step.compensation} was never "
                        "called after the crash",
                        (interrupted, *forward, *undo),
                    )
                )
    return found


compensation_resumed = Invariant(
    "compensation_resumed",
    _compensation_resumed,
    "a compensation interrupted by a coordinator crash is resumed by the coordinator that recovers",
)


def _saga_owned(execution: Execution) -> list[Violation]:
    if execution.halted or execution.error is not None:
        return []
    crashes = _crashes(execution)
    if not execution.actors:
        # After a crash the recovering coordinator must end the instance itself: a live lease there
        # is its own, or the dead coordinator's.
        if not crashes or execution.status in TERMINAL_STATUSES:
            return []
        return [
            Violation(
                f"after the coordinator crash at {crashes[-1].point}, saga instance {execution.correlation_id} was left without an "
                f"owner: the recovering coordinator ended with status {execution.status!r}, not one of {', '.join(TERMINAL_STATUSES)}",
                (crashes[-1],),
            )
        ]
    # Several actors: every instance must be ended by one of them, or still be owned (a live lease:
    # whichever coordinator next finds it expired takes the instance up, as a recovery does).
    found = []
    for corr in dict.fromkeys(a.correlation_id for a in execution.actors):
        mine = [a for a in execution.actors if a.correlation_id == corr]
        if any(a.status in TERMINAL_STATUSES or a.status == "crashed" for a in mine) or corr in execution.owned:
            continue
        ends = ", ".join(f"{a.name} {a.status!r}" for a in mine)
        found.append(
            Violation(
                f"saga instance {corr} was left without an owner: none of its actors ended it ({ends}) and nothing shows it "
                "still owned (no live lease)",
                tuple(crashes[-1:]),
            )
        )
    return found


saga_owned = Invariant(
    "saga_owned",
    _saga_owned,
    "no saga instance is left without an owner: every one ends, or is provably still owned (a live lease); after a "
    "coordinator crash, the coordinator that recovers takes it to its end",
)

#: What `standard_invariants` adds for a saga that declares how it recovers.
DURABLE_INVARIANTS = (compensation_resumed, saga_owned)
