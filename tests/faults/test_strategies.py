"""The fault_plans strategy: every plan it draws is a valid plan for the saga."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from saga_verify import FaultPlan, Saga, Step, run_plan
from saga_verify.errors import OptionError
from saga_verify.faults import Refuse, fault_plans, templates_for
from saga_verify.reference import order_saga

OPERATIONS = {f"{p}.{o}" for p, o in order_saga.operations}


@settings(max_examples=150)
@given(fault_plans(order_saga))
def test_drawn_plans_validate_and_keep_to_the_defaults(plan: FaultPlan) -> None:
    plan.validate(order_saga)
    assert isinstance(plan, FaultPlan)
    assert len(plan.faults) <= 3
    points = [f.at for f in plan.faults]
    assert len(set(points)) == len(points)
    assert points == sorted(points)
    assert all(1 <= p.attempt <= 3 for p in points)
    assert all(f"{p.participant}.{p.operation}" in OPERATIONS for p in points)
    assert (plan.saga, plan.saga_ref) == ("order", "saga_verify.reference:order_saga")
    # refusals only where a step says how its participant refuses
    for fault in plan.faults:
        if isinstance(fault, Refuse):
            assert (fault.at.participant, fault.at.operation) in order_saga.refusable


@settings(max_examples=60)
@given(fault_plans(order_saga, max_faults=1, max_attempt=2))
def test_limits_are_kept(plan: FaultPlan) -> None:
    assert len(plan.faults) <= 1
    assert all(f.at.attempt <= 2 for f in plan.faults)


@settings(max_examples=40)
@given(fault_plans(order_saga, max_faults=5))
def test_drawn_plans_round_trip_and_run(plan: FaultPlan) -> None:
    assert FaultPlan.loads(plan.dumps()) == plan
    execution = run_plan(order_saga, plan)  # validates, then runs without a definition error
    assert execution.trace


def test_the_strategy_reaches_every_operation_and_kind() -> None:
    seen_ops: set[str] = set()
    seen_kinds: set[str] = set()

    @settings(max_examples=200, derandomize=True)
    @given(fault_plans(order_saga, max_faults=3))
    def collect(plan: FaultPlan) -> None:
        for fault in plan.faults:
            seen_ops.add(f"{fault.at.participant}.{fault.at.operation}")
            seen_kinds.add(fault.kind)

    collect()
    assert seen_ops == OPERATIONS
    assert seen_kinds == {"fail", "timeout", "lose-reply", "refuse", "duplicate", "delay", "outage", "crash"}


def test_a_saga_without_refuse_hooks_never_gets_a_refusal() -> None:
    class Svc:
        def go(self) -> str:
            return "ok"

        def undo(self) -> str:
            return "ok"

    saga = Saga(
        "plain",
        steps=[Step("svc", "go", compensation="undo")],
        participants=lambda: {"svc": Svc()},
        run=lambda s, i: "completed",
    )
    assert not any(t.cls is Refuse for t in templates_for(saga, "svc", "go"))

    @settings(max_examples=100)
    @given(fault_plans(saga))
    def check(plan: FaultPlan) -> None:
        plan.validate(saga)
        assert not any(isinstance(f, Refuse) for f in plan.faults)

    check()


def test_late_templates_scale_with_the_call_timeout() -> None:
    class Svc:
        def go(self) -> str:
            return "ok"

    saga = Saga(
        "slow",
        steps=[Step("svc", "go")],
        participants=lambda: {"svc": Svc()},
        run=lambda s, i: "completed",
        call_timeout=2.0,
    )
    texts = [str(t) for t in templates_for(saga, "svc", "go")]
    assert texts == [
        "fail",
        "timeout",
        "lose-reply",
        "duplicate lag=0",
        "duplicate lag=60",
        "delay seconds=1",
        "delay seconds=60",
        "outage",
    ]
    # A saga that lets searches freeze its participants gets the pause last, just as late.
    paused = [str(t) for t in templates_for(dataclasses.replace(saga, pauses=True), "svc", "go")]
    assert paused == [*texts, "pause seconds=60"]


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "3", None])
@pytest.mark.parametrize("option", ["max_faults", "max_attempt"])
def test_bad_limits_are_option_errors(option: str, bad: object) -> None:
    with pytest.raises(OptionError) as info:
        fault_plans(order_saga, **{option: bad})  # type: ignore[arg-type]
    assert option in str(info.value)
    assert repr(bad) in str(info.value)


def test_the_strategy_composes_with_other_strategies() -> None:
    @settings(max_examples=30)
    @given(st.tuples(fault_plans(order_saga, max_faults=2), st.integers(0, 5)))
    def check(pair: tuple[FaultPlan, int]) -> None:
        plan, seed = pair
        FaultPlan(plan.faults, seed=seed).validate(order_saga)

    check()
