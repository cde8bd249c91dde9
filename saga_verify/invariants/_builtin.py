"""The built-in saga invariants, derived from the saga's steps. They read ledgers and the trace,
never the fault plan."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from .._saga import TERMINAL_STATUSES, Saga, Step
from .._world import Execution, LedgerRow
from ..errors import SagaDefinitionError
from ._choreography import choreography_invariants
from ._core import Invariant, Violation
from ._durable import DURABLE_INVARIANTS
from ._time import retry_budget, within_deadline

_ANSWERED = frozenset({"ok"})


_NONE: list[LedgerRow] = []
Effects = Mapping[tuple[str, str], list[LedgerRow]]


def _by_correlation(execution: Execution) -> Mapping[str, Effects]:
    return execution.effects


def _rows(effects: Effects, participant: str, action: str | None) -> list[LedgerRow]:
    return effects.get((participant, action), _NONE) if action else _NONE


def _in_effect(effects: Effects, step: Step) -> tuple[list[LedgerRow], list[LedgerRow]]:
    return _rows(effects, step.participant, step.action), _rows(effects, step.participant, step.compensation)


def _compensatable(saga: Saga) -> Iterator[Step]:
    return (s for s in saga.steps if not s.irreversible)


def no_double_effect(step: Step, *, name: str | None = None) -> Invariant:
    """The step takes effect at most once per saga instance (for payment.charge: no double charge).
    Named ``no_double_<action>`` unless ``name`` says otherwise."""

    def check(execution: Execution) -> list[Violation]:
        found = []
        for corr, rows in _by_correlation(execution).items():
            forward = _rows(rows, step.participant, step.action)
            if len(forward) > 1:
                found.append(Violation(f"{step} took effect {len(forward)} times for {corr}", tuple(forward)))
        return found

    return Invariant(name or f"no_double_{step.action}", check, f"{step} takes effect at most once per saga")


def _compensation_matches_effect(execution: Execution) -> list[Violation]:
    found = []
    for corr, rows in _by_correlation(execution).items():
        for step in _compensatable(execution.saga):
            forward, undo = _in_effect(rows, step)
            for i, comp in enumerate(undo):
                before = [r for r in forward if r.seq < comp.seq]
                if len(before) <= i:
                    what = "before any" if not before else f"{i + 1} times after only {len(before)}"
                    found.append(
                        Violation(
                            f"{step.participant}.{step.compensation} took effect {what} {step} for {corr}",
                            tuple(forward + undo),
                        )
                    )
                    break
    return found


compensation_matches_effect = Invariant(
    "compensation_matches_effect",
    _compensation_matches_effect,
    "a compensation undoes an effect that happened, at most once per effect (no refund without a charge, no double refund)",
)


def _full_compensation(execution: Execution) -> list[Violation]:
    if execution.status != "compensated" and not execution.actors:
        return []
    found = []
    for corr, rows in _by_correlation(execution).items():
        if execution.status_of(corr) != "compensated":
            continue
        for step in execution.saga.steps:
            forward, undo = _in_effect(rows, step)
            if step.irreversible:
                if forward:
                    found.append(Violation(f"the saga reported compensated, but irreversible {step} took effect for {corr}", tuple(forward)))
                continue
            net = sum(r.amount for r in forward) - sum(r.amount for r in undo)
            counts = f"{len(forward)} x {step.action}, {len(undo)} x {step.compensation}, net {net:g}"
            if len(undo) > len(forward) or net < 0:
                found.append(
                    Violation(
                        f"the saga reported compensated, but {step} was over-compensated for {corr}: "
                        f"{step.participant}.{step.compensation} undid more than took effect ({counts})",
                        tuple(forward + undo),
                    )
                )
            elif len(forward) > len(undo) or net:
                found.append(
                    Violation(
                        f"the saga reported compensated, but {step} is still in effect for {corr} ({counts})",
                        tuple(forward + undo),
                    )
                )
    return found


full_compensation = Invariant(
    "full_compensation",
    _full_compensation,
    "a saga that reports compensated leaves nothing in effect: no reservation, no net charge, no shipment, no message",
)


def _last_call(execution: Execution, participant: str, operation: str | None, corr: str) -> str | None:
    """What became of the last call of the operation for saga instance ``corr`` (with one actor,
    every call is its instance's)."""
    outcome = None
    alone = not execution.actors
    for entry in execution.trace:
        if (
            entry.participant == participant
            and entry.operation == operation
            and entry.outcome not in ("late", "copy")
            and (alone or entry.correlation_id == corr)
        ):
            outcome = entry.outcome
    return outcome


def _all_or_nothing(execution: Execution) -> list[Violation]:
    found = []
    for corr, rows in _by_correlation(execution).items():
        status = execution.status_of(corr)
        for step in _compensatable(execution.saga):
            forward, undo = _in_effect(rows, step)
            in_effect = len(forward) > len(undo)
            if status == "completed" and not in_effect:
                found.append(
                    Violation(f"the saga reported completed, but {step} is not in effect for {corr}", tuple(forward + undo))
                )
            elif status == "failed" and in_effect:
                last = _last_call(execution, step.participant, step.compensation, corr)
                if last is None:
                    found.append(
                        Violation(
                            f"the saga reported failed and left {step} in effect for {corr} without trying "
                            f"{step.participant}.{step.compensation}",
                            tuple(forward),
                        )
                    )
                elif last in _ANSWERED:
                    found.append(
                        Violation(
                            f"the saga reported failed and {step} is still in effect for {corr}, although "
                            f"{step.participant}.{step.compensation} answered",
                            tuple(forward + undo),
                        )
                    )
    if execution.status == "completed" and not execution.effects:
        found.append(Violation("the saga reported completed, but no step took effect"))
    return found


all_or_nothing = Invariant(
    "all_or_nothing",
    _all_or_nothing,
    "a completed saga did every compensatable step; a failed one left in effect only what it tried and failed to undo",
)


def _terminates(execution: Execution) -> Violation | None:
    if execution.halted:
        tail = execution.trace[-3:]
        return Violation(f"the saga did not finish: it {execution.halted}", tuple(tail))
    if not execution.actors and execution.status != "crashed" and execution.status not in TERMINAL_STATUSES:
        return Violation(f"the saga ended with status {execution.status!r}, not one of {', '.join(TERMINAL_STATUSES)}")
    # With several actors, every saga instance must end, the saga's own included: one of its actors
    # may leave it to another (a start delivered twice answers "in progress", a fenced coordinator
    # stops), not all of them.
    for corr in dict.fromkeys(a.correlation_id for a in execution.actors):
        status = execution.status_of(corr)
        if status != "crashed" and status not in TERMINAL_STATUSES:
            names = ", ".join(a.name for a in execution.actors if a.correlation_id == corr)
            return Violation(f"saga instance {corr} ended with status {status!r} ({names}), not one of {', '.join(TERMINAL_STATUSES)}")
    return None


terminates = Invariant("terminates", _terminates, "the saga reaches a terminal state within its call and time budget")


def _no_unhandled_error(execution: Execution) -> Violation | None:
    err = execution.error
    who = "the saga"
    if err is None:
        other = next((a for a in execution.actors[1:] if a.error is not None), None)
        if other is None:
            return None
        err, who = other.error, f"actor {other.name}"
    tail = execution.trace[-1:] if execution.trace else ()
    return Violation(f"{who} raised {type(err).__name__}: {err}", tuple(tail))


no_unhandled_error = Invariant("no_unhandled_error", _no_unhandled_error, "the saga handles every failure it can meet instead of raising")


def _first_calls(execution: Execution, corr: str | None = None) -> dict[tuple[str, str], int]:
    """When the saga (saga instance ``corr``, if given) first called each operation (trace position)."""
    first: dict[tuple[str, str], int] = {}
    for entry in execution.trace:
        if entry.outcome not in ("late", "copy") and (corr is None or entry.correlation_id == corr):
            first.setdefault((entry.participant, entry.operation), entry.seq)
    return first


def _reverse_compensation_order(execution: Execution) -> list[Violation]:
    # Judged on the order the saga *issued* compensations: the network may still land them in
    # another order (a held refund after the release), which no saga can prevent. Only steps that
    # depend on each other are ordered: independent ones may be undone in any order, as a library
    # may run them concurrently.
    found = []
    saga = execution.saga
    position = {step: i for i, step in enumerate(saga.steps)}
    steps = list(_compensatable(saga))
    # With several actors, each instance's compensations are ordered among themselves.
    called = _first_calls(execution) if not execution.actors else {}
    for corr, effects in _by_correlation(execution).items():
        if execution.actors:
            called = _first_calls(execution, corr)
        done = []
        for step in steps:
            forward = _rows(effects, step.participant, step.action)
            issued = called.get((step.participant, step.compensation or ""))
            if forward and issued is not None:
                done.append((forward[0], issued, step))
        done.sort(key=lambda t: t[0].seq)
        for i, (fwd_a, issued_a, a) in enumerate(done):
            for fwd_b, issued_b, b in done[i + 1 :]:
                ia, ib = position[a], position[b]
                if not (saga.depends(ib, ia) or saga.depends(ia, ib)):
                    continue
                if issued_a < issued_b:
                    found.append(
                        Violation(
                            f"the saga called {a.participant}.{a.compensation} before {b.participant}.{b.compensation} "
                            f"for {corr}, but {a} took effect before {b}: compensations must run in reverse",
                            (fwd_a, fwd_b, execution.trace[issued_a], execution.trace[issued_b]),
                        )
                    )
    return found


reverse_compensation_order = Invariant(
    "reverse_compensation_order",
    _reverse_compensation_order,
    "the saga issues compensations in the reverse order in which their steps took effect, for steps that depend on each other",
)


def _forward_order(execution: Execution) -> list[Violation]:
    found = []
    saga = execution.saga
    steps = saga.steps
    for corr, effects in _by_correlation(execution).items():
        for i, step in enumerate(steps):
            forward = _rows(effects, step.participant, step.action)
            if not forward:
                continue
            first = forward[0]
            for j in saga.dependencies[i]:
                needed = steps[j]
                before = [r for r in _rows(effects, needed.participant, needed.action) if r.seq < first.seq]
                if before:
                    continue
                later = _rows(effects, needed.participant, needed.action)
                what = f"before {needed}, which it depends on" if later else f"without {needed}, which it depends on"
                found.append(Violation(f"{step} took effect for {corr} {what}", (first, *later[:1])))
    return found


forward_order = Invariant(
    "forward_order",
    _forward_order,
    "a step takes effect only after the steps it depends on did (by default, the step before it)",
)


def _given_up(execution: Execution, step: Step, corr: str) -> bool:
    """Saga instance ``corr`` said it failed, having tried to undo ``step`` without ever getting
    an answer: then what lands of that step later is what it honestly reported, not a broken promise."""
    return execution.status_of(corr) == "failed" and _last_call(execution, step.participant, step.compensation, corr) not in (None, *_ANSWERED)


def _no_forward_after_compensation(execution: Execution) -> list[Violation]:
    found = []
    steps = execution.saga.steps
    for corr, effects in _by_correlation(execution).items():
        compensations = [r for s in steps for r in _rows(effects, s.participant, s.compensation)]
        if not compensations:
            continue
        first_comp = min(compensations, key=lambda r: r.seq)
        late = sorted(
            (
                r
                for s in steps
                if not _given_up(execution, s, corr)
                for r in _rows(effects, s.participant, s.action)
                if r.seq > first_comp.seq
            ),
            key=lambda r: r.seq,
        )
        if late:
            names = ", ".join(f"{r.participant}.{r.action}" for r in late)
            found.append(
                Violation(
                    f"{names} took effect for {corr} after compensation began ({first_comp.participant}.{first_comp.action} at t={first_comp.time:.3f})",
                    (first_comp, *late),
                )
            )
    return found


no_forward_after_compensation = Invariant(
    "no_forward_after_compensation",
    _no_forward_after_compensation,
    "once compensation began, no forward step takes effect (no late charge after the refund), unless the "
    "saga reported failed after its compensation of that step never got through",
)


def _irreversible_last(execution: Execution) -> list[Violation]:
    found = []
    saga = execution.saga
    for corr, rows in _by_correlation(execution).items():
        for step in (s for s in saga.steps if s.irreversible):
            for effect in _rows(rows, step.participant, step.action):
                not_yet: list[str] = []
                undone: list[LedgerRow] = []
                for other in _compensatable(saga):
                    forward, undo = _in_effect(rows, other)
                    done_before = sum(r.seq < effect.seq for r in forward)
                    undone_before = sum(r.seq < effect.seq for r in undo)
                    if done_before <= undone_before:
                        not_yet.append(str(other))
                    undone.extend(r for r in undo if r.seq > effect.seq)
                if not_yet:
                    found.append(
                        Violation(
                            f"irreversible {step} took effect for {corr} before {', '.join(not_yet)} had succeeded",
                            (effect,),
                        )
                    )
                elif undone:
                    names = ", ".join(f"{r.participant}.{r.action}" for r in undone)
                    found.append(Violation(f"irreversible {step} took effect for {corr}, then {names} undid a step", (effect, *undone)))
    return found


irreversible_last = Invariant(
    "irreversible_last",
    _irreversible_last,
    "an irreversible step takes effect only after every compensatable step succeeded, and nothing is undone after it",
)


def standard_invariants(saga_or_steps: Saga | Iterable[Step]) -> tuple[Invariant, ...]:
    """The invariants every saga should hold, for a saga's steps (give the saga or its steps); and,
    where they declare them, the deadline (`within_deadline`) and retry budgets (`retry_budget`)."""
    steps = tuple(saga_or_steps.steps if isinstance(saga_or_steps, Saga) else saga_or_steps)
    timed = (within_deadline,) if isinstance(saga_or_steps, Saga) and saga_or_steps.deadline is not None else ()
    budgets = (retry_budget,) if any(s.retries is not None for s in steps) else ()
    return (
        terminates,
        no_unhandled_error,
        *(no_double_effect(s, name=_double_name(s, steps)) for s in steps),
        compensation_matches_effect,
        full_compensation,
        all_or_nothing,
        no_forward_after_compensation,
        reverse_compensation_order,
        irreversible_last,
        forward_order,
        *timed,
        *budgets,
        *(DURABLE_INVARIANTS if isinstance(saga_or_steps, Saga) and saga_or_steps.durable is not None else ()),
    )


def _double_name(step: Step, steps: tuple[Step, ...]) -> str:
    shared = sum(s.action == step.action for s in steps) > 1
    return f"no_double_{step.participant}_{step.action}" if shared else f"no_double_{step.action}"


def invariants_for(saga: Saga) -> tuple[Invariant, ...]:
    """The saga's own invariants if it names them, else the standard ones."""
    if saga.invariants is None:
        if saga.choreography is not None:
            return choreography_invariants()
        return standard_invariants(saga)
    found = tuple(saga.invariants)
    for item in found:
        if not isinstance(item, Invariant):
            raise SagaDefinitionError(
                f"saga {saga.name!r}: invariants must be saga_verify.Invariant values, got {item!r}; "
                "make a function one with @saga_verify.invariant"
            )
    return found  # type: ignore[return-value]  # every item was checked just above
