"""The exhaustive bounded sweep: level by level, every plan over the points executions reach,
none twice, within its budget."""

from __future__ import annotations

import pytest

from saga_verify import FaultPlan
from saga_verify._exploration import reached_points, run_plan_unchecked, sweep
from saga_verify._runtimes import place
from saga_verify._world import trace_to_json
from saga_verify.faults import Crash, Outage
from saga_verify.faults._alphabet import alphabet
from saga_verify.reference import order_saga as reference_order_saga
from saga_verify.reference import unbounded_retry as reference_unbounded_retry

# The sweep runs executions itself: the reference sagas' services placed in simulation.
order_saga = place(reference_order_saga, "sim")
unbounded_retry = place(reference_unbounded_retry, "sim")


class _Counting:
    """Runs plans for the sweep and remembers each one it was asked to run."""

    def __init__(self, saga) -> None:
        self.run = run_plan_unchecked(saga)
        self.plans: list[FaultPlan] = []

    def __call__(self, plan: FaultPlan):
        self.plans.append(plan)
        return self.run(plan)


@pytest.fixture(scope="module")
def two_levels():
    """Everything the unbudgeted two-fault sweep of the correct saga tries."""
    return list(sweep(order_saga, run_plan_unchecked(order_saga), max_faults=2, budget=None))


def _one_fault_plans(saga, execution) -> set[frozenset]:
    templates = alphabet(saga)
    return {
        frozenset([t.at(p)]) for p in reached_points(execution) for t in templates[(p.participant, p.operation)]
    }


def test_reached_points_are_the_calls_of_the_fault_free_run() -> None:
    base = run_plan_unchecked(order_saga)(FaultPlan())
    assert [str(p) for p in reached_points(base)] == [
        "inventory.reserve#1",
        "payment.charge#1",
        "shipping.create#1",
        "notification.send#1",
    ]


@pytest.mark.parametrize(
    ("fault", "points"),
    [
        # A copy is not a call the saga made.
        ({"kind": "duplicate", "at": "payment.charge#1", "lag": 0}, ["payment.charge#1"]),
        # A held request is a call; its landing later is not, the saga's retry is.
        ({"kind": "delay", "at": "payment.charge#1", "seconds": 30}, ["payment.charge#1", "payment.charge#2"]),
    ],
)
def test_reached_points_leave_out_copies_and_late_landings(fault, points) -> None:
    execution = run_plan_unchecked(order_saga)(FaultPlan.from_json({"faults": [fault]}))
    reached = [str(p) for p in reached_points(execution)]
    assert [p for p in reached if p.startswith("payment.")] == points
    assert len(reached) == 3 + len(points)
    assert len(execution.trace) == len(reached) + 1  # the copy or the late landing


def test_level_order_all_single_faults_before_any_pair(two_levels) -> None:
    sizes = [len(plan.faults) for plan, _ in two_levels]
    assert sizes == sorted(sizes)
    assert set(sizes) == {1, 2}
    # The first plan tried has one fault: the fault-free run is the sweep's base, not one of its plans.
    assert sizes[0] == 1


def test_every_single_fault_plan_over_reached_points_is_tried(two_levels) -> None:
    base = run_plan_unchecked(order_saga)(FaultPlan())
    expected = _one_fault_plans(order_saga, base)
    tried = {frozenset(plan.faults) for plan, _ in two_levels if len(plan.faults) == 1}
    assert tried == expected
    # 4 points; refusable steps have 10 templates (crash included), notification.send has 9.
    assert len(expected) == 10 + 10 + 10 + 9


def test_every_pair_extends_a_single_fault_plan_after_its_fault(two_levels) -> None:
    """Level 2 is exactly: each tried 1-fault plan plus one fault at a call its execution made
    after its fault (not at a call an outage already blocks)."""
    templates = alphabet(order_saga)
    expected: set[frozenset] = set()
    for plan, execution in two_levels:
        if len(plan.faults) != 1:
            continue
        (first,) = plan.faults
        points = reached_points(execution)
        last = max(i for i, p in enumerate(points) if p == first.at)
        for p in points[last + 1 :]:
            blocked = (
                isinstance(first, Outage)
                and (p.participant, p.operation) == (first.at.participant, first.at.operation)
                and p.attempt >= first.at.attempt
            )
            if not blocked:
                expected |= {frozenset([first, t.at(p)]) for t in templates[(p.participant, p.operation)]}
    tried = [frozenset(plan.faults) for plan, _ in two_levels if len(plan.faults) == 2]
    assert set(tried) == expected
    assert len(tried) == 705


def test_no_plan_is_tried_twice(two_levels) -> None:
    keys = [frozenset(plan.faults) for plan, _ in two_levels]
    assert len(keys) == len(set(keys)) == 744


def test_no_plan_is_executed_twice_either() -> None:
    execute = _Counting(order_saga)
    yielded = [plan for plan, _ in sweep(order_saga, execute, max_faults=2, budget=None)]
    # The fault-free base run, then exactly the plans yielded, each once.
    assert execute.plans[0] == FaultPlan()
    assert execute.plans[1:] == yielded
    assert len({frozenset(p.faults) for p in execute.plans}) == len(execute.plans)


def test_each_execution_is_the_execution_of_its_plan(two_levels) -> None:
    run = run_plan_unchecked(order_saga)
    for plan, execution in two_levels[::37]:
        assert execution.faults == plan.faults
        assert trace_to_json(execution.trace) == trace_to_json(run(plan).trace)


@pytest.mark.parametrize("budget", [0, 1, 17, 39, 40, 100])
def test_budget_bounds_the_plans_tried(budget) -> None:
    execute = _Counting(order_saga)
    tried = list(sweep(order_saga, execute, max_faults=3, budget=budget))
    assert len(tried) == budget
    assert len(execute.plans) == budget + 1  # plus the fault-free base run
    sizes = [len(plan.faults) for plan, _ in tried]
    assert sizes == sorted(sizes)


def test_budget_none_means_every_plan_of_the_levels(two_levels) -> None:
    assert len(list(sweep(order_saga, run_plan_unchecked(order_saga), max_faults=2, budget=10_000))) == len(two_levels)


def test_zero_levels_try_nothing() -> None:
    execute = _Counting(order_saga)
    assert list(sweep(order_saga, execute, max_faults=0, budget=None)) == []


def test_a_budgeted_deeper_sweep_still_goes_level_by_level() -> None:
    tried = [plan for plan, _ in sweep(order_saga, run_plan_unchecked(order_saga), max_faults=3, budget=2000)]
    sizes = [len(p.faults) for p in tried]
    assert sizes == sorted(sizes)
    assert sizes.count(1) == 39
    assert sizes.count(2) == 705
    assert sizes.count(3) == 2000 - 744


def test_within_a_level_extensions_of_aborted_then_ambiguous_executions_come_first(two_levels) -> None:
    """Level 2 extends first the executions that did not complete, then those where some
    outcome was hidden from the caller, then the rest; and it adds a crash only after every
    other kind of fault, and extends a plan with a crash only after every plan without."""

    def promise(execution) -> int:
        if execution.status != "completed":
            return 2
        if any(e.outcome in ("reply-lost", "crashed", "held", "frozen", "late", "copy") for e in execution.trace):
            return 1
        return 0

    parents = {frozenset(plan.faults): execution for plan, execution in two_levels if len(plan.faults) == 1}
    order = [
        (isinstance(plan.faults[1], Crash), isinstance(plan.faults[0], Crash), -promise(parents[frozenset(plan.faults[:1])]))
        for plan, _ in two_levels
        if len(plan.faults) == 2
    ]
    assert order == sorted(order)
    assert {o[2] for o in order} == {0, -1, -2}
    assert {(o[0], o[1]) for o in order} == {(False, False), (False, True), (True, False), (True, True)}


def test_sweep_explores_calls_only_faults_reach() -> None:
    # The retry after a lost reply (payment.charge#2) is not in the fault-free run; the sweep still
    # puts faults there, and before the calls every execution makes.
    tried = [plan for plan, _ in sweep(order_saga, run_plan_unchecked(order_saga), max_faults=2, budget=None)]
    assert any(str(f.at) == "payment.charge#2" for p in tried for f in p.faults)
    after_lost_reply = [
        p for p in tried if len(p.faults) == 2 and str(p.faults[0]) == "lose-reply at payment.charge#1"
    ]
    assert str(after_lost_reply[0].faults[1].at) == "payment.charge#2"
    assert after_lost_reply[0].faults[1].kind == "outage"  # a persistent failure first


def test_spinning_saga_is_swept_without_running_forever() -> None:
    tried = list(sweep(unbounded_retry, run_plan_unchecked(unbounded_retry), max_faults=1, budget=None))
    spinning = [e for p, e in tried if p.faults and p.faults[0].kind == "outage"]
    assert spinning
    assert all(e.halted for e in spinning)
