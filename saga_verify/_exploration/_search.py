"""The search for a failing schedule: replay what the example database remembers, sweep every
small plan, then let Hypothesis explore larger ones and shrink what it finds."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hypothesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import strategies as st
from hypothesis.errors import Flaky

from .._saga import TERMINAL_STATUSES, Saga
from .._world import Endpoint, Execution, World, plan_chooser, trace_to_json
from ..errors import NondeterminismError, OptionError, SagaCrashedError, SagaDefinitionError
from ..faults import DeliveryPoint, Fault, FaultPlan, FaultTemplate
from ..faults._alphabet import alphabet
from ..faults._kinds import FAULT_KINDS, Outage
from ..invariants import Invariant, Violation, check, invariants_for
from ._coverage import Coverage
from ._sweep import run_plan_unchecked, sweep

#: Share of delivery points at which the Hypothesis phase draws a fault: few faults per plan, so
#: what it finds shrinks quickly to the essential ones.
FAULT_RATE = 0.25
DEFAULT_SWEEP_FAULTS = 2
DEFAULT_SWEEP_BUDGET = 3000
DEFAULT_REPORT_DIR = ".saga-verify"

#: Told of each execution the search checks: (phase, executions so far, failures found so far).
#: The phases: ``preflight``, ``database``, ``sweep``, ``hypothesis``, ``shrinking``.
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Failure:
    """One broken promise: the smallest plan found that breaks it, and what happened under it."""

    saga: Saga
    plan: FaultPlan
    violations: tuple[Violation, ...]
    execution: Execution
    found_by: str
    """``baseline`` (no faults), ``database``, ``sweep`` or ``hypothesis``."""
    examples: int
    """Executions of the search up to and including the first that broke an invariant."""
    shrink_seconds: float
    """Seconds from the first violation to the minimal plan."""
    plan_path: Path | None = None
    pytest_replay: str | None = None
    """A pytest command that replays it, when the plugin knows the test."""

    @property
    def invariants(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(v.invariant for v in self.violations))

    @property
    def replay_commands(self) -> tuple[str, ...]:
        commands = []
        if self.plan_path is not None and self.plan.saga_ref:
            commands.append(f"saga-verify replay {self.plan_path}")
        if self.pytest_replay:
            commands.append(self.pytest_replay)
        if not commands:
            commands.append(f"saga_verify.replay(saga, saga_verify.FaultPlan.loads({self.plan.dumps().strip()!r}))")
        return tuple(commands)


@dataclass(frozen=True)
class ExplorationResult:
    """What a search did and what it found."""

    saga: Saga
    failures: tuple[Failure, ...]
    executions: int
    """Every execution the search ran (sweep, Hypothesis examples and shrinking)."""
    seconds: float
    seed: int | None
    sweep_executions: int = 0
    hypothesis_examples: int = 0
    coverage: Coverage | None = None
    """Per fault kind and operation, the plans that put that fault there (every phase counted)."""
    sweep_faults: int = 0
    """The sweep's bound: faults per plan (0: no sweep)."""
    sweep_complete: bool = False
    """Whether the sweep tried every plan within its bound (it did not stop at its budget or at a
    failure)."""

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def examples_to_violation(self) -> int | None:
        return min((f.examples for f in self.failures), default=None)


class _Counter:
    def __init__(self, coverage: Coverage | None = None, progress: Progress | None = None) -> None:
        self.executions = 0
        self.first_violation: int | None = None
        self.first_violation_at = 0.0
        self.coverage = coverage
        self.progress = progress
        self.phase = "preflight"
        self.failures = 0

    def check(self, execution: Execution, invariants: Sequence[Invariant]) -> list[Violation]:
        """Check the invariants, and note what the execution covered."""
        violations = check(execution, invariants)
        if self.coverage is not None:
            self.coverage.record(execution.faults, bool(violations))
        if self.progress is not None:
            self.progress(self.phase, self.executions, self.failures)
        return violations


class _Found(Exception):
    """Raised inside the Hypothesis test when an execution breaks an invariant."""

    def __init__(self, execution: Execution, violations: list[Violation]) -> None:
        super().__init__(f"{violations[0]}")
        self.execution = execution
        self.violations = violations


_FOUND_BY_INVARIANT: dict[str, type[_Found]] = {}


def _found_type(invariant: str) -> type[_Found]:
    # One exception type per invariant, so Hypothesis treats each broken invariant as a distinct
    # bug, shrinks each on its own and reports them together.
    cls = _FOUND_BY_INVARIANT.get(invariant)
    if cls is None:
        name = "Broke_" + re.sub(r"\W", "_", invariant)
        cls = type(name, (_Found,), {"__module__": __name__})
        _FOUND_BY_INVARIANT[invariant] = cls
    return cls


class _DrawingChooser:
    """Lets Hypothesis decide the fault at each delivery point the execution reaches, so every
    choice it makes is a real decision and shrinking a choice to its simplest removes a fault."""

    __slots__ = ("data", "strategies")

    def __init__(self, data: Any, strategies: dict[int, Any]) -> None:
        self.data = data
        self.strategies = strategies

    def __call__(self, ep: Endpoint, attempt: int) -> Fault | None:
        template: FaultTemplate | None = self.data.draw(self.strategies[ep.slot])
        if template is None:
            return None
        return template.at(DeliveryPoint(ep.participant, ep.operation, attempt))


def decision_strategies(saga: Saga) -> dict[int, Any]:
    """For each operation (by slot), a strategy over None (deliver normally) and its faults."""
    out = {}
    for slot, (_op, templates) in enumerate(alphabet(saga).items()):
        nones = max(1, round(len(templates) * (1 - FAULT_RATE) / FAULT_RATE))
        out[slot] = st.sampled_from((None,) * nones + templates)
    return out


def database_key(saga: Saga, invariants: Sequence[Invariant]) -> bytes:
    text = "|".join([saga.name, saga.ref or "", *(i.name for i in invariants)])
    return b"saga-verify:" + hashlib.sha256(text.encode()).hexdigest()[:32].encode()


def _check_options(max_examples: int | None, sweep_faults: int, sweep_budget: int | None, seed: int | None) -> None:
    for name, value, low in (("max_examples", max_examples, 0), ("sweep_faults", sweep_faults, 0), ("sweep_budget", sweep_budget, 0)):
        if value is None and name != "sweep_faults":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise OptionError(f"{name} must be a whole number >= {low}, got {value!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise OptionError(f"seed must be a whole number, got {seed!r}")


def _preflight(saga: Saga, invariants: Sequence[Invariant]) -> Execution:
    first = run_plan_unchecked(saga)(FaultPlan())
    second = run_plan_unchecked(saga)(FaultPlan())
    compare_traces(saga, first, second, "with no faults")
    if first.error is not None:
        err = first.error
        where = _where(err)
        raise SagaCrashedError(
            f"saga {saga.name!r} raised {type(err).__name__}: {err} with no fault injected{where}. "
            "Fix the saga or its participants first: saga-verify can only judge a saga that works on a good day."
        ) from err
    if first.halted is None and first.status not in TERMINAL_STATUSES:
        raise SagaDefinitionError(
            f"saga {saga.name!r} returned {first.result!r} with no fault injected; return one of "
            f"{', '.join(TERMINAL_STATUSES)} (or an object whose status is one), or pass "
            "outcome= to Saga to map what it returns"
        )
    return first


def _where(err: BaseException) -> str:
    tb = err.__traceback__
    last = None
    while tb is not None:
        last = tb
        tb = tb.tb_next
    if last is None:
        return ""
    return f" (at {last.tb_frame.f_code.co_filename}:{last.tb_lineno})"


def compare_traces(saga: Saga, a: Execution, b: Execution, under: str) -> None:
    """Raise NondeterminismError naming the first difference between two executions of one plan."""
    if trace_to_json(a.trace) == trace_to_json(b.trace) and a.status == b.status:
        return
    for ea, eb in zip(a.trace, b.trace, strict=False):
        if ea.to_json() != eb.to_json():
            diff = f"entry #{ea.seq} was {ea.to_json()} once and {eb.to_json()} the next time"
            break
    else:
        if len(a.trace) != len(b.trace):
            diff = f"one run made {len(a.trace)} deliveries, the other {len(b.trace)}"
        else:
            diff = f"the saga ended {a.status!r} once and {b.status!r} the next time"
    raise NondeterminismError(
        f"saga {saga.name!r} is not deterministic: the same plan ({under}) gave two different traces: {diff}. "
        "The saga or a participant reads something the harness does not own: the wall clock, a global "
        "random source, uuid4, or state kept between executions. Read time from services.clock and "
        "derive ids and keys from the input."
    )


def _minimize(saga: Saga, plan: FaultPlan, invariants: Sequence[Invariant], target: str, counter: _Counter) -> tuple[FaultPlan, Execution, list[Violation]]:
    """Make the plan 1-minimal for the broken invariant: no fault can be dropped or made simpler."""
    execute = run_plan_unchecked(saga)

    def breaks(candidate: FaultPlan) -> tuple[Execution, list[Violation]] | None:
        counter.executions += 1
        execution = execute(candidate)
        violations = counter.check(execution, invariants)
        return (execution, violations) if any(v.invariant == target for v in violations) else None

    current = plan
    result = breaks(current)
    if result is None:
        raise NondeterminismError(
            f"saga {saga.name!r}: plan {plan} broke {target} once and not when run again; "
            "the saga or a participant keeps state between executions or reads the wall clock"
        )
    templates = alphabet(saga)

    def simpler(plan: FaultPlan) -> Iterator[FaultPlan]:
        """The plans one step simpler than ``plan``, in the order they are tried: a fault
        dropped; faults on one operation from some attempt on merged into one outage (a failure
        at each attempt, say: fewer faults, the same schedule); a fault made a simpler kind."""
        faults = plan.faults
        for i in range(len(faults)):
            yield plan.with_faults(faults[:i] + faults[i + 1 :])
        for fault in faults:
            op = (fault.at.participant, fault.at.operation)
            later = [g for g in faults if (g.at.participant, g.at.operation) == op and g.at.attempt >= fault.at.attempt and g is not fault]
            if later:
                kept = [g for g in faults if g is fault or g not in later]
                yield plan.with_faults(tuple(Outage(fault.at) if g is fault else g for g in kept))
        for i, fault in enumerate(faults):
            rank = FAULT_KINDS.index(type(fault))
            for template in templates[(fault.at.participant, fault.at.operation)]:
                if FAULT_KINDS.index(template.cls) >= rank:
                    break
                yield plan.with_faults((*faults[:i], template.at(fault.at), *faults[i + 1 :]))

    # Take the first simpler plan that still breaks the invariant, and start again from it,
    # until none does.
    while True:
        for candidate in simpler(current):
            found = breaks(candidate)
            if found is not None:
                current, result = candidate, found
                break
        else:
            return current, result[0], result[1]


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
    progress: Progress | None = None,
) -> ExplorationResult:
    """Search for fault plans under which ``saga`` breaks an invariant.

    In order: plans the example database remembers for this saga; every plan of up to
    ``sweep_faults`` faults over the points executions reach (at most ``sweep_budget``
    executions); then Hypothesis with ``max_examples`` examples (its settings profile decides
    when None), seeded with ``seed``. A failure's minimal plan is saved to the database and, when
    ``report_dir`` is set, written there as a JSON file that ``saga-verify replay`` runs.
    ``progress``, if given, is told of every execution checked (see `Progress`)."""
    if not isinstance(saga, Saga):
        raise OptionError(f"explore() takes a saga_verify.Saga, got {type(saga).__name__}")
    _check_options(max_examples, sweep_faults, sweep_budget, seed)
    invs = tuple(invariants) if invariants is not None else invariants_for(saga)
    started = time.perf_counter()
    counter = _Counter(Coverage(saga), progress)
    base_settings = settings if settings is not None else hypothesis.settings()
    db = base_settings.database
    key = database_key(saga, invs)

    base = _preflight(saga, invs)
    counter.executions += 2
    failures: list[Failure] = []

    def found(plan: FaultPlan, execution: Execution, violations: list[Violation], how: str) -> None:
        if counter.first_violation is None:
            counter.first_violation = counter.executions
            counter.first_violation_at = time.perf_counter()
        t0 = time.perf_counter()
        target = violations[0].invariant
        phase, counter.phase = counter.phase, "shrinking"
        plan, execution, violations = _minimize(saga, plan, invs, target, counter)
        counter.phase = phase
        if any(f.plan.faults == plan.faults for f in failures):
            return  # two broken invariants shrank to one plan: report it once, with all it breaks
        shrink = time.perf_counter() - counter.first_violation_at if how == "hypothesis" else time.perf_counter() - t0
        counter.executions += 1  # _finish runs the plan once more to prove it replays
        failures.append(_finish(saga, plan, execution, violations, how, counter.first_violation, shrink, report_dir, db, key))
        counter.failures = len(failures)

    baseline_violations = counter.check(base, invs)
    if baseline_violations:
        counter.first_violation = counter.executions
        counter.first_violation_at = time.perf_counter()
        counter.executions += 1  # _finish runs the plan once more to prove it replays
        failures.append(_finish(saga, FaultPlan(), base, baseline_violations, "baseline", counter.first_violation, 0.0, report_dir, db, key))

    if not failures and db is not None:
        counter.phase = "database"
        for stored in list(db.fetch(key)):
            try:
                plan = FaultPlan.loads(stored.decode("utf-8"), source="example database")
                plan.validate(saga)
            except Exception:
                db.delete(key, stored)
                continue
            counter.executions += 1
            execution = run_plan_unchecked(saga)(plan)
            violations = counter.check(execution, invs)
            if violations:
                found(plan, execution, violations, "database")
                break
            db.delete(key, stored)  # fixed: forget it, as Hypothesis forgets examples that pass

    sweep_count = 0
    sweep_complete = False
    if not failures and sweep_faults > 0:
        counter.phase = "sweep"
        for plan, execution in sweep(saga, run_plan_unchecked(saga), max_faults=sweep_faults, budget=sweep_budget, base=base):
            counter.executions += 1
            sweep_count += 1
            violations = counter.check(execution, invs)
            if violations:
                found(plan, execution, violations, "sweep")
                break
        # Claimed only when the sweep ran out of plans below its budget: a sweep that used its
        # whole budget may have had more to try.
        sweep_complete = not failures and (sweep_budget is None or sweep_count < sweep_budget)

    hypothesis_examples = 0
    if not failures and (max_examples is None or max_examples > 0):
        before = counter.executions
        counter.phase = "hypothesis"
        for plan, execution, violations in _hypothesis_phase(saga, invs, seed, max_examples, base_settings, key, counter):
            found(plan, execution, violations, "hypothesis")
        hypothesis_examples = counter.executions - before

    # Smallest plan first: it is the one a person should read.
    failures.sort(key=lambda f: (len(f.plan.faults), f.examples))
    return ExplorationResult(
        saga=saga,
        failures=tuple(failures),
        executions=counter.executions,
        seconds=time.perf_counter() - started,
        seed=seed,
        sweep_executions=sweep_count,
        hypothesis_examples=hypothesis_examples,
        coverage=counter.coverage,
        sweep_faults=sweep_faults,
        sweep_complete=sweep_complete,
    )


def _hypothesis_phase(
    saga: Saga,
    invariants: Sequence[Invariant],
    seed: int | None,
    max_examples: int | None,
    base_settings: hypothesis.settings,
    key: bytes,
    counter: _Counter,
) -> list[tuple[FaultPlan, Execution, list[Violation]]]:
    strategies = decision_strategies(saga)

    def search(data: Any) -> None:
        chooser = _DrawingChooser(data, strategies)
        execution = World(saga, chooser).run()
        counter.executions += 1
        violations = counter.check(execution, invariants)
        if violations:
            counter.phase = "shrinking"  # Hypothesis shrinks what broke before it reports it
            if counter.first_violation is None:
                counter.first_violation = counter.executions
                counter.first_violation_at = time.perf_counter()
            raise _found_type(violations[0].invariant)(execution, violations)

    overrides: dict[str, Any] = {
        "deadline": None,
        "suppress_health_check": list(HealthCheck),
        "phases": tuple(p for p in base_settings.phases if p is not Phase.explain),
        "report_multiple_bugs": True,
    }
    if max_examples is not None:
        overrides["max_examples"] = max_examples
    test = given(st.data())(search)
    test = hypothesis.settings(base_settings, **overrides)(test)
    if seed is not None:
        test = hypothesis.seed(seed)(test)
    # Each saga (and set of invariants) gets its own entries in the example database.
    # Hypothesis reads it from the inner test (as its own pytest plugin sets it), not the wrapper.
    test.hypothesis.inner_test._hypothesis_internal_add_digest = key  # type: ignore[attr-defined]
    try:
        test()
    except _Found as exc:
        return [_from_found(saga, exc)]
    except BaseExceptionGroup as group:
        matched, rest = group.split(_Found)
        if rest is not None:
            raise rest.exceptions[0] from None  # not ours: an error in the harness or an invariant
        assert matched is not None
        return [_from_found(saga, e) for e in _leaves(matched)]
    except Flaky as exc:
        raise NondeterminismError(
            f"saga {saga.name!r} broke an invariant under a plan and not when Hypothesis ran it again: the "
            "saga or a participant keeps state between executions or reads the wall clock or a global "
            f"random source ({type(exc).__name__})"
        ) from None
    return []


def _leaves(group: BaseExceptionGroup[Any]) -> list[_Found]:
    out: list[_Found] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            out.extend(_leaves(exc))
        elif isinstance(exc, _Found):
            out.append(exc)
    return out


def _from_found(saga: Saga, exc: _Found) -> tuple[FaultPlan, Execution, list[Violation]]:
    plan = FaultPlan(exc.execution.faults, seed=exc.execution.seed, saga=saga.name, saga_ref=saga.ref)
    return plan, exc.execution, exc.violations


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "saga"


def _finish(
    saga: Saga,
    plan: FaultPlan,
    execution: Execution,
    violations: list[Violation],
    how: str,
    examples: int,
    shrink_seconds: float,
    report_dir: str | Path | None,
    db: Any,
    key: bytes,
) -> Failure:
    names = tuple(dict.fromkeys(v.invariant for v in violations))
    plan = FaultPlan(plan.faults, seed=plan.seed, saga=saga.name, saga_ref=saga.ref, violated=names)
    # A failure must replay: run it again and insist on the same trace.
    again = run_plan_unchecked(saga)(plan)
    compare_traces(saga, execution, again, str(plan))
    if db is not None and plan.faults:
        db.save(key, plan.dumps().encode("utf-8"))
    path = None
    if report_dir is not None:
        digest = hashlib.sha256(plan.dumps().encode()).hexdigest()[:8]
        path = plan.save(Path(report_dir) / f"{_slug(saga.name)}-{_slug(names[0])}-{digest}.json")
    return Failure(saga, plan, tuple(violations), execution, how, examples, shrink_seconds, path)


def replay(saga: Saga, plan: FaultPlan, *, invariants: Sequence[Invariant] | None = None) -> tuple[Execution, list[Violation]]:
    """Run one plan (validated against the saga) and check the invariants."""
    plan.validate(saga)
    execution = World(saga, plan_chooser(plan), plan.seed).run()
    invs = tuple(invariants) if invariants is not None else invariants_for(saga)
    return execution, check(execution, invs)
