"""The search for a failing schedule: replay what the example database remembers, sweep every
small plan, then let Hypothesis explore larger ones and shrink what it finds."""

from __future__ import annotations

import hashlib
import re
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hypothesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import strategies as st
from hypothesis.errors import Flaky, StopTest

from .._saga import TERMINAL_STATUSES, Saga
from .._world import Endpoint, Execution, Ledger, World, plan_chooser, trace_to_json
from .._world._clocks import clock_session
from ..errors import NondeterminismError, OptionError, SagaCrashedError, SagaDefinitionError
from ..faults import DeliveryPoint, Fault, FaultPlan, FaultTemplate
from ..faults._alphabet import alphabet
from ..faults._kinds import FAULT_KINDS, Outage
from ..invariants import Invariant, Violation, check, invariants_for
from ._coverage import Coverage
from ._sweep import SweepSummary, run_plan_unchecked, sweep

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
        #: For each broken invariant, the executions up to the first that broke it, and when.
        self.first_seen: dict[str, tuple[int, float]] = {}
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

    def saw(self, violations: Sequence[Violation]) -> None:
        """Note the invariants the latest execution broke (the first time each breaks counts)."""
        now = time.perf_counter()
        if self.first_violation is None:
            self.first_violation, self.first_violation_at = self.executions, now
        for v in violations:
            self.first_seen.setdefault(v.invariant, (self.executions, now))


class _Abort(BaseException):
    """Carries an error of the harness (or of an invariant) out of the Hypothesis phase at once:
    as an Exception, Hypothesis would take it for a failing example and try to shrink it."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(repr(error))
        self.error = error


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

    __slots__ = ("data", "out_of_data", "strategies")

    #: Hypothesis draws only in the thread that runs the test: the actors of an execution (each in
    #: a thread of its own) ask that thread to decide (`_world._actors`).
    thread_bound = True

    def __init__(self, data: Any, strategies: dict[int, Any]) -> None:
        self.data = data
        self.strategies = strategies
        #: Set once Hypothesis has no more choices for this example.
        self.out_of_data: StopTest | None = None

    def __call__(self, ep: Endpoint, attempt: int) -> Fault | None:
        if self.out_of_data is not None:
            return None
        try:
            template: FaultTemplate | None = self.data.draw(self.strategies[ep.slot])
        except StopTest as stop:
            # Raised here it would go through the saga's code, which may swallow it, or die with it
            # in a task and leave its event loop waiting forever. The rest of the execution runs
            # without faults, and the search hands it back to Hypothesis once the run is over.
            self.out_of_data = stop
            return None
        except BaseException as exc:
            raise ep.world.fail(exc) from None
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


#: The first fault-free execution this process saw of each saga (its status, calls and trace): a
#: later search that sees another knows that the saga's executions are not independent.
_FIRST_BASELINE: weakref.WeakKeyDictionary[Saga, tuple[str, int, str]] = weakref.WeakKeyDictionary()


def _preflight(saga: Saga, invariants: Sequence[Invariant]) -> Execution:
    first = run_plan_unchecked(saga)(FaultPlan())
    second = run_plan_unchecked(saga)(FaultPlan())
    shared = [
        name
        for name, obj in first.participants.items()
        if isinstance(ledger := getattr(obj, "ledger", None), Ledger)
        and getattr(second.participants.get(name), "ledger", None) is ledger
    ]
    if shared:
        raise SagaDefinitionError(
            f"saga {saga.name!r}: participants() gave two executions the same ledger of {', '.join(shared)}, so "
            "the effects of one pile up in the next: executions are not independent. Build each participant, "
            "and its Ledger, anew in participants()"
        )
    try:
        compare_traces(saga, first, second, "with no faults")
    except NondeterminismError as exc:
        raise NondeterminismError(f"{exc}{_shared_participants(first, second)}") from None
    if first.error is not None:
        err = first.error
        where = _where(err)
        raise SagaCrashedError(
            f"saga {saga.name!r} raised {type(err).__name__}: {err} with no fault injected{where}. "
            "Fix the saga or its participants first: saga-verify can only judge a saga that works on a good day."
        ) from err
    earlier = _FIRST_BASELINE.get(saga)
    now = (first.status, len(first.trace), trace_to_json(first.trace)) if not saga.real_time else (first.status, 0, "")
    if earlier is not None and earlier != now:
        raise NondeterminismError(
            f"saga {saga.name!r} is not deterministic: its executions are not independent. Earlier in this process "
            f"its fault-free execution ended {earlier[0]!r} after {earlier[1]} calls; now the same execution ends "
            f"{first.status!r} after {len(first.trace)}: something the earlier executions left behind changed what "
            f"it does. {_where_state_lives(saga, first, second)}"
        )
    if first.halted is None and first.status not in TERMINAL_STATUSES:
        raise SagaDefinitionError(
            f"saga {saga.name!r} returned {first.result!r} with no fault injected; return one of "
            f"{', '.join(TERMINAL_STATUSES)} (or an object whose status is one), or pass "
            "outcome= to Saga to map what it returns. If it does return one of those when it runs on its own, "
            "its executions are not independent: an earlier execution in this process left state behind that "
            f"changed what it does. {_where_state_lives(saga, first, second)}"
        )
    _FIRST_BASELINE.setdefault(saga, now)
    return first


def _shared_participants(first: Execution, second: Execution) -> str:
    shared = [name for name, obj in first.participants.items() if second.participants.get(name) is obj]
    if not shared:
        return ""
    return (
        f" Here participants() gave both executions the same {', '.join(shared)} object: each execution needs "
        "participants of its own, so build them anew in it."
    )


def _where_state_lives(saga: Saga, first: Execution, second: Execution) -> str:
    shared = _shared_participants(first, second)
    if shared:
        return shared.strip()
    modules = dict.fromkeys(
        m
        for m in (getattr(saga.run, "__module__", None), *(type(p).__module__ for p in first.participants.values()))
        if m and m != "builtins"
    )
    return (
        f"Such state lives at module or class level in {', '.join(modules)} or in a library they use "
        "(a circuit breaker, a cache, a rate limiter, a registry, a client made at import), or in "
        "participants that participants() does not build anew. Keep it per execution: build it in "
        "participants(), or reset it there."
    )


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
    """Raise NondeterminismError naming the first difference between two executions of one plan
    (for a saga on real time, `Saga.real_time`, only a different ending is one)."""
    if a.status == b.status and (saga.real_time or trace_to_json(a.trace) == trace_to_json(b.trace)):
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
            if later and any(t.cls is Outage for t in templates[op]):  # where the alphabet has outages
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
    all_failures: bool = True,
) -> ExplorationResult:
    """Search for fault plans under which ``saga`` breaks an invariant.

    In order: plans the example database remembers for this saga; every plan of up to
    ``sweep_faults`` faults over the points executions reach (at most ``sweep_budget``
    executions); then Hypothesis with ``max_examples`` examples (its settings profile decides
    when None), seeded with ``seed``. Every invariant that breaks gets a failure of its own, with
    its own minimal plan (``all_failures=False`` stops at the first). A failure's minimal plan is
    saved to the database and, when ``report_dir`` is set, written there as a JSON file that
    ``saga-verify replay`` runs. ``progress``, if given, is told of every execution checked (see
    `Progress`)."""
    if not isinstance(saga, Saga):
        raise OptionError(f"explore() takes a saga_verify.Saga, got {type(saga).__name__}")
    _check_options(max_examples, sweep_faults, sweep_budget, seed)
    if not isinstance(all_failures, bool):
        raise OptionError(f"all_failures must be True or False, got {all_failures!r}")
    invs = tuple(invariants) if invariants is not None else invariants_for(saga)
    with clock_session():
        return _explore(saga, invs, seed, max_examples, sweep_faults, sweep_budget, settings, report_dir, progress, all_failures)


def _explore(
    saga: Saga,
    invs: tuple[Invariant, ...],
    seed: int | None,
    max_examples: int | None,
    sweep_faults: int,
    sweep_budget: int | None,
    settings: hypothesis.settings | None,
    report_dir: str | Path | None,
    progress: Progress | None,
    all_failures: bool,
) -> ExplorationResult:
    started = time.perf_counter()
    counter = _Counter(Coverage(saga), progress)
    base_settings = settings if settings is not None else hypothesis.settings()
    db = base_settings.database
    key = database_key(saga, invs)

    base = _preflight(saga, invs)
    counter.executions += 2
    failures: list[Failure] = []
    #: The invariants some failure already shows broken: the search goes on for the others.
    reported: set[str] = set()

    def done() -> bool:
        return bool(failures) and not all_failures

    def fresh(violations: Sequence[Violation]) -> list[Violation]:
        return [v for v in violations if v.invariant not in reported]

    def found(plan: FaultPlan, execution: Execution, violations: list[Violation], how: str) -> None:
        # Each invariant this execution breaks that no failure shows yet gets a minimal plan of its own.
        while new := fresh(violations):
            target = new[0].invariant
            examples, first_at = counter.first_seen[target]
            t0 = time.perf_counter()
            phase, counter.phase = counter.phase, "shrinking"
            small, small_execution, small_violations = _minimize(saga, plan, invs, target, counter)
            counter.phase = phase
            reported.add(target)
            reported.update(v.invariant for v in small_violations)
            if any(f.plan.faults == small.faults for f in failures):
                continue  # two broken invariants shrank to one plan: report it once, with all it breaks
            shrink = time.perf_counter() - (first_at if how == "hypothesis" else t0)
            counter.executions += 1  # _finish runs the plan once more to prove it replays
            failures.append(_finish(saga, small, small_execution, small_violations, how, examples, shrink, report_dir, db, key, invs))
            counter.failures = len(failures)

    baseline_violations = counter.check(base, invs)
    if baseline_violations:
        counter.saw(baseline_violations)
        counter.executions += 1  # _finish runs the plan once more to prove it replays
        failures.append(_finish(saga, FaultPlan(), base, baseline_violations, "baseline", 2, 0.0, report_dir, db, key, invs))
        counter.failures = len(failures)
        reported.update(v.invariant for v in baseline_violations)

    if db is not None and not done():
        counter.phase = "database"
        remembered = []
        for stored in list(db.fetch(key)):
            try:
                plan = FaultPlan.loads(stored.decode("utf-8"), source="example database")
                plan.validate(saga)
            except Exception:
                db.delete(key, stored)
                continue
            remembered.append((len(plan.faults), stored, plan))
        # Smallest first, and in the same order wherever the database is read.
        for _, stored, plan in sorted(remembered, key=lambda r: r[:2]):
            counter.executions += 1
            execution = run_plan_unchecked(saga)(plan)
            violations = counter.check(execution, invs)
            if not violations:
                db.delete(key, stored)  # fixed: forget it, as Hypothesis forgets examples that pass
                continue
            counter.saw(violations)
            found(plan, execution, violations, "database")
            if done():
                break

    summary = SweepSummary(sweep_faults)
    if sweep_faults > 0 and not done():
        counter.phase = "sweep"
        for plan, execution in sweep(
            saga, run_plan_unchecked(saga), max_faults=sweep_faults, budget=sweep_budget, base=base, summary=summary
        ):
            counter.executions += 1
            violations = counter.check(execution, invs)
            if violations:
                counter.saw(violations)
                found(plan, execution, violations, "sweep")
                if done():
                    break

    hypothesis_examples = 0
    if (max_examples is None or max_examples > 0) and not done():
        before = counter.executions
        counter.phase = "hypothesis"
        for plan, execution, violations in _hypothesis_phase(saga, invs, seed, max_examples, base_settings, key, counter, fresh):
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
        sweep_executions=summary.plans,
        hypothesis_examples=hypothesis_examples,
        coverage=counter.coverage,
        sweep_faults=sweep_faults,
        # Claimed only when the sweep ran out of plans: not when it stopped at its budget, or at
        # a failure when the search stops at the first.
        sweep_complete=summary.complete,
    )


def _hypothesis_phase(
    saga: Saga,
    invariants: Sequence[Invariant],
    seed: int | None,
    max_examples: int | None,
    base_settings: hypothesis.settings,
    key: bytes,
    counter: _Counter,
    fresh: Callable[[Sequence[Violation]], list[Violation]],
) -> list[tuple[FaultPlan, Execution, list[Violation]]]:
    """Let Hypothesis search; an example fails when it breaks an invariant ``fresh`` keeps (one
    that no failure shows yet)."""
    strategies = decision_strategies(saga)

    def search(data: Any) -> None:
        chooser = _DrawingChooser(data, strategies)
        try:
            execution = World(saga, chooser).run()
        except Exception as exc:
            raise _Abort(exc) from None
        if chooser.out_of_data is not None:
            # This example ran out of choices: Hypothesis discards it, and it is not counted (as
            # when the stop cut such an execution short).
            raise chooser.out_of_data
        counter.executions += 1
        try:
            violations = counter.check(execution, invariants)
        except Exception as exc:
            raise _Abort(exc) from None
        if violations:
            counter.saw(violations)
            new = fresh(violations)
            if new:
                counter.phase = "shrinking"  # Hypothesis shrinks what broke before it reports it
                raise _found_type(new[0].invariant)(execution, violations)

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
    aborted: BaseException | None = None
    try:
        test()
    except _Abort as abort:
        aborted = abort.error
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
    if aborted is not None:
        raise aborted  # raised here, outside the except clause, it carries no trace of the carrier
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
    invariants: Sequence[Invariant] | None = None,
) -> Failure:
    names = tuple(dict.fromkeys(v.invariant for v in violations))
    plan = FaultPlan(plan.faults, seed=plan.seed, saga=saga.name, saga_ref=saga.ref, violated=names)
    # A failure must replay: run it again and insist on the same trace.
    again = run_plan_unchecked(saga)(plan)
    compare_traces(saga, execution, again, str(plan))
    if saga.real_time and invariants is not None:
        # On real time the trace may interleave differently; the verdict may not.
        broken_again = tuple(dict.fromkeys(v.invariant for v in check(again, invariants)))
        if broken_again != names:
            raise NondeterminismError(
                f"saga {saga.name!r} is not deterministic: the same plan ({plan}) broke {', '.join(names) or 'nothing'} "
                f"once and {', '.join(broken_again) or 'nothing'} the next time"
            )
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
    with clock_session():
        execution = World(saga, plan_chooser(plan), plan.seed).run()
    invs = tuple(invariants) if invariants is not None else invariants_for(saga)
    return execution, check(execution, invs)
