"""A workflow as a saga: where control can go after each step (on success, on failure, on a
refusal), which steps go forward and which compensate, and which forward step each compensating
step undoes. The static checks and the saga built from a workflow both read this shape."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ._criteria import Criterion
from ._document import Workflow, WorkflowStep, fail
from ._expressions import Context, Message

#: Reply statuses a failure action's criteria are tried against to tell a refusal from the rest.
_STATUSES = (None, 200, 201, 202, 204, 301, 304, 400, 401, 402, 403, 404, 409, 410, 412, 422, 429, 500, 502, 503, 504)


@dataclass(frozen=True)
class Edge:
    """One way control leaves a step."""

    source: str
    target: str | None
    """The step it goes to; None when the workflow ends."""
    outcome: str
    """``success`` or ``failure``."""
    via: str
    """What in the document sends it there, for messages."""
    refusal: bool = False
    """A failure that only a 4xx reply leads to: the step did not take effect."""
    retry: bool = False


def refusal_only(criteria: Iterable[Criterion]) -> bool:
    """Whether ``criteria`` hold for some reply and only for 4xx replies (a business refusal or a
    rejected request: the operation did not take effect)."""
    criteria = tuple(criteria)
    if not criteria:
        return False
    holding = [s for s in _STATUSES if all(c.holds(Context({}, {}, response=None if s is None else Message(status=s))) for c in criteria)]
    return bool(holding) and all(s is not None and 400 <= s < 500 for s in holding)


def edges(workflow: Workflow) -> list[Edge]:
    out: list[Edge] = []
    for step in workflow.steps:
        settled = False
        for action in step.on_success:
            out.append(Edge(step.id, action.step if action.type == "goto" else None, "success", f"onSuccess {action.name!r}"))
            if not action.criteria:
                settled = True
                break
        if not settled:
            following = workflow.after(step)
            out.append(Edge(step.id, following.id if following else None, "success", "next in the document" if following else "the last step"))
        settled = False
        for action in step.on_failure:
            refusal = refusal_only(action.criteria)
            if action.type == "retry":
                out.append(Edge(step.id, step.id, "failure", f"onFailure {action.name!r}", refusal, retry=True))
                continue  # once its limit is spent, the next action applies
            out.append(Edge(step.id, action.step if action.type == "goto" else None, "failure", f"onFailure {action.name!r}", refusal))
            if not action.criteria:
                settled = True
                break
        if not settled:
            out.append(Edge(step.id, None, "failure", "no failure action applies"))
    return out


@dataclass(frozen=True)
class Shape:
    """The workflow read as a saga."""

    edges: tuple[Edge, ...]
    forward: tuple[str, ...]
    """Steps reached from the first one through successes, in document order."""
    compensating: frozenset[str]
    """Steps reached only through a failure."""
    compensation: dict[str, str]
    """Forward step -> the compensating step that undoes it."""
    unreachable: tuple[str, ...]

    def irreversible(self, workflow: Workflow) -> frozenset[str]:
        """Forward steps with a side effect that nothing undoes."""
        return frozenset(s for s in self.forward if workflow.step(s).operation.side_effect and s not in self.compensation)

    def undone_by(self, step: str) -> str | None:
        return next((f for f, c in self.compensation.items() if c == step), None)


def reach(edges: Iterable[Edge], start: str, follow: Callable[[Edge], bool] | None = None) -> list[str]:
    """Steps reachable from ``start`` (itself included) through edges ``follow`` accepts."""
    by_source: dict[str, list[Edge]] = {}
    for edge in edges:
        by_source.setdefault(edge.source, []).append(edge)
    seen, queue = [start], deque([start])
    while queue:
        for edge in by_source.get(queue.popleft(), []):
            if edge.target is not None and edge.target not in seen and (follow is None or follow(edge)):
                seen.append(edge.target)
                queue.append(edge.target)
    return seen


def shape(workflow: Workflow) -> Shape:
    """Classify the steps and pair each compensating step with the forward step it undoes: the one
    its ``x-compensates`` names, else the only forward step with a side effect on the same service."""
    found = edges(workflow)
    start = workflow.steps[0].id
    forward_set = set(reach(found, start, lambda e: e.outcome == "success"))
    reachable = set(reach(found, start))
    forward = tuple(s.id for s in workflow.steps if s.id in forward_set)
    compensating = frozenset(reachable - forward_set)
    compensation: dict[str, str] = {}
    for step_id in sorted(compensating, key=lambda s: workflow.step(s).index):
        step = workflow.step(step_id)
        if not step.operation.side_effect:
            continue
        undone = _undoes(workflow, step, forward)
        if undone in compensation:
            raise fail(workflow.file, f"undoes {undone!r}, which step {compensation[undone]!r} undoes already; one step undoes each", step=step_id)
        compensation[undone] = step_id
    unreachable = tuple(s.id for s in workflow.steps if s.id not in reachable)
    return Shape(tuple(found), forward, compensating, compensation, unreachable)


def _undoes(workflow: Workflow, step: WorkflowStep, forward: tuple[str, ...]) -> str:
    source = step.operation.source
    if step.compensates is not None:
        target = workflow.step(step.compensates)
        if target.id not in forward:
            raise fail(workflow.file, f"x-compensates names {target.id!r}, which is no forward step of the workflow", step=step.id)
        if target.operation.source != source:
            raise fail(
                workflow.file,
                f"x-compensates names {target.id!r}, a call to {target.operation.source}; a compensation is an operation of the same service ({source})",
                step=step.id,
            )
        return target.id
    candidates = [s for s in forward if workflow.step(s).operation.source == source and workflow.step(s).operation.side_effect]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise fail(
            workflow.file,
            f"is reached only on failure, so it compensates, but no forward step calls {source} for it to undo; "
            "say which step it undoes with x-compensates",
            step=step.id,
        )
    raise fail(workflow.file, f"could undo any of {', '.join(candidates)} (all call {source}): say which with x-compensates", step=step.id)

