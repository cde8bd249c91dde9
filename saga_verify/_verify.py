"""The entry points a user calls: explore a saga, verify it (raise on a violation), replay a plan,
run one plan, and render what a search found; each on the runtime asked for. They sit above the
search, the reports and the runtimes, so that none of those has to know the others."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._exploration import DEFAULT_REPORT_DIR, DEFAULT_SWEEP_BUDGET, DEFAULT_SWEEP_FAULTS, ExplorationResult, Failure
from ._exploration import explore as _explore
from ._exploration import replay as _replay
from ._reporting import distinct_head, render_failure, render_result
from ._runtimes import place
from ._saga import Saga
from ._world import Execution
from ._world import run_plan as _run_plan
from .errors import OptionError, SagaViolationError, SagaViolationGroup
from .faults import FaultPlan
from .invariants import Invariant, Violation

if TYPE_CHECKING:
    import hypothesis


def explore(
    saga: Saga,
    *,
    invariants: Sequence[Invariant] | None = None,
    seed: int | None = 0,
    max_examples: int | None = None,
    sweep_faults: int = DEFAULT_SWEEP_FAULTS,
    sweep_budget: int | None = DEFAULT_SWEEP_BUDGET,
    settings: hypothesis.settings | None = None,
    report_dir: str | Path | None = DEFAULT_REPORT_DIR,
    runtime: str = "sim",
    all_failures: bool = True,
) -> ExplorationResult:
    """Search for fault plans under which ``saga`` breaks an invariant, with its participants on
    ``runtime`` (``sim``, ``asgi``, ``process`` or ``container``; anything but ``sim`` needs a
    saga whose participants are a `System`).

    In order: plans the example database remembers for this saga; every plan of up to
    ``sweep_faults`` faults over the points executions reach (at most ``sweep_budget``
    executions); then Hypothesis with ``max_examples`` examples (its settings profile decides
    when None), seeded with ``seed``. Every invariant that breaks gets a failure of its own, with
    its own minimal plan (``all_failures=False`` stops at the first). A failure's minimal plan is
    saved to the database and, when ``report_dir`` is set, written there as a JSON file that
    ``saga-verify replay`` runs. Raises nothing for a violation: read ``result.failures``."""
    return explore_on(
        saga,
        runtime=runtime,
        invariants=invariants,
        seed=seed,
        max_examples=max_examples,
        sweep_faults=sweep_faults,
        sweep_budget=sweep_budget,
        settings=settings,
        report_dir=report_dir,
        all_failures=all_failures,
    )


def explore_on(saga: Saga, *, runtime: str, progress: Any = None, **options: Any) -> ExplorationResult:
    """`explore` on ``runtime``, showing ``progress`` (the command line's terminal display)."""
    if not isinstance(saga, Saga):
        raise OptionError(f"explore() takes a saga_verify.Saga, got {type(saga).__name__}")
    result = _explore(place(saga, runtime), progress=progress, **options)
    # The result speaks of the saga the caller gave, not of its copy placed on the runtime.
    failures = tuple(dataclasses.replace(f, saga=saga) for f in result.failures)
    return dataclasses.replace(result, saga=saga, failures=failures)


def verify(
    saga: Saga,
    *,
    invariants: Sequence[Invariant] | None = None,
    seed: int | None = 0,
    max_examples: int | None = None,
    sweep_faults: int = DEFAULT_SWEEP_FAULTS,
    sweep_budget: int | None = DEFAULT_SWEEP_BUDGET,
    settings: hypothesis.settings | None = None,
    report_dir: str | Path | None = DEFAULT_REPORT_DIR,
    runtime: str = "sim",
    all_failures: bool = True,
) -> ExplorationResult:
    """`explore`, and raise `SagaViolationError` with the full report if anything broke (a
    `SagaViolationGroup` of them when several invariants broke)."""
    result = explore(
        saga,
        invariants=invariants,
        seed=seed,
        max_examples=max_examples,
        sweep_faults=sweep_faults,
        sweep_budget=sweep_budget,
        settings=settings,
        report_dir=report_dir,
        runtime=runtime,
        all_failures=all_failures,
    )
    if not result.ok:
        raise violation_error(result)
    return result


def violation_error(result: ExplorationResult) -> SagaViolationError:
    """What `verify` and the pytest plugin raise for a result with failures: one
    `SagaViolationError` with the report, or, for several distinct broken invariants, a
    `SagaViolationGroup` of them (each with its own minimal plan), as Hypothesis reports several
    bugs."""
    if len(result.failures) == 1:
        return SagaViolationError(render_result(result), result)
    errors = [SagaViolationError(render_failure(f), result) for f in result.failures]
    return SagaViolationGroup(distinct_head(result).rstrip(":"), errors, result)


def replay(
    saga: Saga, plan: FaultPlan, *, invariants: Sequence[Invariant] | None = None, runtime: str = "sim"
) -> tuple[Execution, list[Violation]]:
    """Run one plan (validated against the saga: a plan of another saga is refused) on
    ``runtime`` and check the invariants."""
    plan.validate(saga)
    return _replay(place(saga, runtime), plan, invariants=invariants)


def run_plan(saga: Saga, plan: FaultPlan | None = None, *, runtime: str = "sim") -> Execution:
    """Execute the saga once under ``plan`` (no faults if None) on ``runtime`` and return what happened."""
    if plan is not None:
        plan.validate(saga)
    return _run_plan(place(saga, runtime), plan)


def report(found: ExplorationResult | Failure) -> str:
    """What a person reads: for a result, every failure's minimal plan, timeline, broken
    invariants and replay line (or the line that says what held); for one failure, its part."""
    if isinstance(found, ExplorationResult):
        return render_result(found)
    if isinstance(found, Failure):
        return render_failure(found)
    raise OptionError(f"report() takes an ExplorationResult or a Failure, got {type(found).__name__}")
