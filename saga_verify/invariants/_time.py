"""The invariants about time: a saga with a deadline settles by it, and no step is called more
often than its retry budget allows. Both read the trace and the execution's timeline of waits."""

from __future__ import annotations

from .._saga import TERMINAL_STATUSES
from .._world import Execution, TraceEntry
from ._core import Invariant, Violation

#: Trace entries that are not calls the saga made: what the network landed on its own, and events.
_NOT_CALLS = frozenset({"late", "copy", "event", "dropped"})


def _within_deadline(execution: Execution) -> list[Violation]:
    saga = execution.saga
    deadline = saga.deadline
    if deadline is None:
        return []
    if execution.halted:
        return [Violation(f"the saga had to settle by its deadline (t={deadline:g}), but it never finished: it {execution.halted}", tuple(execution.trace[-3:]))]
    if execution.status not in TERMINAL_STATUSES:
        return [Violation(f"the saga had to settle by its deadline (t={deadline:g}), but it ended {execution.status!r}")]
    found = []
    forward = {(s.participant, s.action) for s in saga.steps}
    late: list[TraceEntry] = [
        e for e in execution.trace if e.time > deadline and e.outcome not in _NOT_CALLS and (e.participant, e.operation) in forward
    ]
    if late:
        names = ", ".join(dict.fromkeys(e.point for e in late))
        found.append(Violation(f"the saga called {names} after its deadline (t={deadline:g}): past it, it may only compensate", tuple(late)))
    waited = [m for m in execution.moments if m.kind in ("received", "wait-timeout") and m.time > deadline]
    if waited:
        found.append(Violation(f"the saga was still waiting past its deadline (t={deadline:g}): {waited[0].text} at t={waited[0].time:.3f}"))
    returned = execution.returned_at
    if execution.status == "completed" and returned is not None and returned > deadline:
        found.append(Violation(f"the saga reported completed at t={returned:.3f}, after its deadline (t={deadline:g})"))
    return found


within_deadline = Invariant(
    "within_deadline",
    _within_deadline,
    "a saga with a deadline settles by it: past it, it only compensates, waits for nothing, and ends compensated or failed",
)


def _retry_budget(execution: Execution) -> list[Violation]:
    found = []
    for step in execution.saga.steps:
        if step.retries is None:
            continue
        allowed = 1 + step.retries
        calls: dict[str, list[TraceEntry]] = {}
        for e in execution.trace:
            if e.participant == step.participant and e.operation == step.action and e.outcome not in _NOT_CALLS:
                calls.setdefault(e.correlation_id, []).append(e)
        for corr, made in calls.items():
            if len(made) > allowed:
                found.append(
                    Violation(
                        f"{step} was called {len(made)} times for {corr}; its retry budget allows {allowed} (retries={step.retries})",
                        tuple(made[allowed:]),
                    )
                )
    return found


retry_budget = Invariant(
    "retry_budget",
    _retry_budget,
    "a step that declares retries= is called at most 1 + retries times per saga instance",
)
