"""Exhaustive bounded exploration: every plan of up to N faults over the delivery points the
executions actually reach, faults on newly reached behaviour (retries, compensations) first."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import zip_longest

from .._saga import Saga
from .._world import Execution, World, plan_chooser
from ..faults import DeliveryPoint, Fault, FaultPlan, Outage
from ..faults._alphabet import alphabet


@dataclass
class SweepSummary:
    """What a sweep proved: every plan of up to ``max_faults`` faults over the calls the
    executions reach, or, when it stopped at its budget first, the ``plans`` it tried."""

    max_faults: int
    """The most faults a plan of the sweep has."""
    plans: int = 0
    """Plans tried (one execution each)."""
    complete: bool = False
    """True when every such plan was tried; False when the budget stopped the sweep first."""

    def to_json(self) -> dict[str, object]:
        return {"max_faults": self.max_faults, "plans": self.plans, "complete": self.complete}


@dataclass(frozen=True)
class _Explored:
    plan: FaultPlan
    caused: tuple[DeliveryPoint, ...]
    """Calls after its last fault that the fault-free execution never made (retries, compensations)."""
    others: tuple[DeliveryPoint, ...]
    """The other calls after its last fault."""
    score: int
    """How promising its extensions are: 2 if the saga did not complete, 1 if some effect's outcome
    was hidden from the caller (lost reply, held request, copy), else 0."""


_AMBIGUOUS = frozenset({"reply-lost", "crashed", "held", "frozen", "late", "copy", "unread"})


def reached_points(execution: Execution) -> list[DeliveryPoint]:
    """The calls the saga made, in order (held requests landing and copies are not calls)."""
    return [
        DeliveryPoint(e.participant, e.operation, e.attempt)
        for e in execution.trace
        if e.outcome not in ("late", "copy")
    ]


def sweep(
    saga: Saga,
    execute: Callable[[FaultPlan], Execution],
    *,
    max_faults: int,
    budget: int | None,
    base: Execution | None = None,
    summary: SweepSummary | None = None,
) -> Iterator[tuple[FaultPlan, Execution]]:
    """Yield (plan, execution) for each plan tried, level by level: every 1-fault plan over the
    calls the fault-free execution makes, then every 2-fault plan that adds a fault after the
    first one's call, and so on (``base`` is the fault-free execution, if already run). A level is
    finished before the next begins, so the first
    violating plan has as few faults as any.

    Within a level the order is where saga bugs live first: extensions of executions that
    aborted, then of those with a hidden outcome; on each, faults on calls that the parent's
    fault caused (a retry, a compensation) before the rest, and there a persistent failure
    first; parents take turns so that no one parent uses up the budget.

    ``summary``, if given, counts the plans tried and says at the end whether every plan was."""
    templates = alphabet(saga)
    persistent_first = {
        op: tuple(sorted(ts, key=lambda t: t.cls is not Outage)) for op, ts in templates.items()
    }
    tried: set[frozenset[Fault]] = set()
    executions = 0

    base_plan = FaultPlan()
    if base is None:
        base = execute(base_plan)
    base_points = frozenset(reached_points(base))

    def explored(plan: FaultPlan, execution: Execution) -> _Explored:
        points = reached_points(execution)
        last = _last_fault_position(plan, points)
        blocked = {(f.at.participant, f.at.operation): f.at.attempt for f in plan.faults if isinstance(f, Outage)}
        after = [
            p
            for p in points[last + 1 :]
            if (p.participant, p.operation) not in blocked or p.attempt < blocked[(p.participant, p.operation)]
        ]
        if execution.status != "completed":
            score = 2
        elif any(e.outcome in _AMBIGUOUS for e in execution.trace):
            score = 1
        else:
            score = 0
        caused = tuple(p for p in after if p not in base_points)
        others = tuple(p for p in after if p in base_points)
        return _Explored(plan, caused, others, score)

    def extensions(parent: _Explored, last: bool) -> list[FaultPlan]:
        """The parent's plan plus one fault: of the kinds tried last only, or of the others."""
        out = []
        for point in parent.caused:
            out += [
                FaultPlan((*parent.plan.faults, t.at(point)))
                for t in persistent_first[(point.participant, point.operation)]
                if t.cls.tried_last == last
            ]
        for point in parent.others:
            out += [
                FaultPlan((*parent.plan.faults, t.at(point)))
                for t in templates[(point.participant, point.operation)]
                if t.cls.tried_last == last
            ]
        return out

    frontier = [explored(base_plan, base)]
    for _level in range(max_faults):
        ordered: list[FaultPlan] = []
        # A crash hides an outcome as a lost reply does, and adds only what the participant
        # forgets in its restart; a pause holds calls as delays do, only all of one participant's
        # at once: within a level, plans that add such a fault come after all the others, and
        # extensions of plans with one after those of plans without.
        for last in (False, True):
            for had_last in (False, True):
                for score in (2, 1, 0):
                    lists = [
                        extensions(p, last)
                        for p in frontier
                        if p.score == score and any(f.tried_last for f in p.plan.faults) == had_last
                    ]
                    for round_ in zip_longest(*lists):
                        ordered.extend(plan for plan in round_ if plan is not None)
        next_frontier = []
        for plan in ordered:
            key = frozenset(plan.faults)
            if key in tried:
                continue
            tried.add(key)
            if budget is not None and executions >= budget:
                return
            execution = execute(plan)
            executions += 1
            if summary is not None:
                summary.plans = executions
            yield plan, execution
            next_frontier.append(explored(plan, execution))
        frontier = next_frontier
        if not frontier:
            break
    if summary is not None:
        summary.complete = True


def _last_fault_position(plan: FaultPlan, points: list[DeliveryPoint]) -> int:
    at = {f.at for f in plan.faults}
    last = -1
    for i, p in enumerate(points):
        if p in at:
            last = i
    return last


def run_plan_unchecked(saga: Saga) -> Callable[[FaultPlan], Execution]:
    """Execute plans the search built itself (already valid for this saga)."""

    def execute(plan: FaultPlan) -> Execution:
        return World(saga, plan_chooser(plan), plan.seed).run()

    return execute
