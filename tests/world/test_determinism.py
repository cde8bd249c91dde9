"""One plan, one seed, one execution: traces are byte-identical across runs, the seed moves only
latency jitter, and a saga that reads something the harness does not own is caught."""

from __future__ import annotations

import itertools
import random
from typing import Any

import hypothesis
import pytest

from saga_verify import FaultPlan, Ledger, Saga, Step, explore, run_plan
from saga_verify._exploration import compare_traces
from saga_verify._world import trace_to_json
from saga_verify.errors import NondeterminismError
from saga_verify.faults import Delay, DeliveryPoint, Duplicate, FailBeforeEffect, LoseReply, Outage, Refuse, Timeout
from saga_verify.reference import order_saga, refund_forgets_charge

P = DeliveryPoint.parse

PLANS = [
    FaultPlan(),
    FaultPlan((LoseReply(P("payment.charge#1")),)),
    FaultPlan((Duplicate(P("payment.charge#1"), lag=30.0), Refuse(P("shipping.create#1")))),
    FaultPlan((Delay(P("payment.charge#1"), seconds=30.0), Delay(P("shipping.create#1"), seconds=0.5))),
    FaultPlan(
        (
            Delay(P("inventory.reserve#1"), seconds=1.0),
            Duplicate(P("shipping.create#1"), lag=5.0),
            Timeout(P("notification.send#1")),
        )
    ),
    FaultPlan(
        (Refuse(P("shipping.create#1")), Outage(P("payment.refund#1")), Duplicate(P("inventory.release#1"), lag=30.0))
    ),
    FaultPlan(
        (FailBeforeEffect(P("payment.charge#1")), Duplicate(P("payment.charge#2")), LoseReply(P("shipping.create#1"))),
        seed=9,
    ),
]


def shape(execution: Any) -> list[tuple[Any, ...]]:
    """Everything about a trace except its timestamps."""
    return [(e.point, e.outcome, e.fault, e.key, e.request, e.reply) for e in execution.trace]


@pytest.mark.parametrize("plan", PLANS, ids=str)
def test_same_plan_same_bytes(plan: FaultPlan) -> None:
    first = run_plan(order_saga, plan)
    texts = {trace_to_json(run_plan(order_saga, plan).trace) for _ in range(3)}
    assert texts == {trace_to_json(first.trace)}
    again = run_plan(order_saga, plan)
    assert again.status == first.status
    assert again.elapsed == first.elapsed
    assert again.rows() == first.rows()


def test_late_deliveries_replay_identically_for_a_broken_saga_too() -> None:
    plan = PLANS[2]
    first = run_plan(refund_forgets_charge, plan)
    assert any(e.outcome == "late" for e in first.trace)
    assert len(first.rows("payment", "charge")) == 2  # the late copy charged again
    assert trace_to_json(run_plan(refund_forgets_charge, plan).trace) == trace_to_json(first.trace)


@pytest.mark.parametrize("plan", PLANS, ids=str)
def test_another_seed_moves_timestamps_not_outcomes(plan: FaultPlan) -> None:
    a = run_plan(order_saga, FaultPlan(plan.faults, seed=1))
    b = run_plan(order_saga, FaultPlan(plan.faults, seed=2))
    assert shape(a) == shape(b)
    assert a.status == b.status
    assert [(r.participant, r.action, r.amount, r.ref, r.delivery) for r in a.rows()] == [
        (r.participant, r.action, r.amount, r.ref, r.delivery) for r in b.rows()
    ]
    assert [e.time for e in a.trace] != [e.time for e in b.trace]
    assert trace_to_json(a.trace) != trace_to_json(b.trace)
    assert (a.seed, b.seed) == (1, 2)


def test_the_seed_of_a_plan_without_faults_is_kept() -> None:
    # An empty plan is still a plan: its seed must reach the world (and the execution's plan).
    execution = run_plan(order_saga, FaultPlan(seed=5))
    assert execution.seed == 5
    assert execution.plan.seed == 5


def test_jitter_stays_small() -> None:
    for seed in range(20):
        execution = run_plan(order_saga, FaultPlan(seed=seed))
        times = [0.0] + [e.time for e in execution.trace]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert all(0.010 <= g <= 0.015 for g in gaps), (seed, gaps)


def test_trace_json_is_canonical_text() -> None:
    execution = run_plan(order_saga, PLANS[1])
    text = trace_to_json(execution.trace)
    assert ", " not in text  # compact separators
    assert '": ' not in text
    assert text.startswith('[{"correlation_id":"order-1","fault":null,"key":"order-1:reserve"')
    assert '"outcome":"reply-lost"' in text
    assert '"point":"payment.charge#2"' in text


def test_object_addresses_do_not_make_equal_executions_differ() -> None:
    class Token:
        pass

    class Svc:
        def __init__(self) -> None:
            self.ledger = Ledger()

        def go(self, *, thing: object) -> object:
            self.ledger.record("go")
            return Token()  # a fresh object each time: its repr carries its address

    saga = Saga(
        "objects",
        steps=[Step("svc", "go")],
        participants=lambda: {"svc": Svc()},
        run=lambda services, _: (services.svc.go(thing=object()), "completed")[1],
    )
    a, b = run_plan(saga), run_plan(saga)
    assert " at 0x" in repr(a.trace[0].reply)
    assert trace_to_json(a.trace) == trace_to_json(b.trace)
    assert "0x" not in trace_to_json(a.trace)


# -- sagas that read what the harness does not own ---------------------------------------------


class Counter:
    """Participant with a ledger; it records whatever the saga sends."""

    def __init__(self) -> None:
        self.ledger = Ledger()

    def bump(self, *, n: object, idempotency_key: str | None = None) -> dict[str, Any]:
        self.ledger.record("bump")
        return {"status": "ok", "n": n}


_calls = itertools.count()


def _counting_run(services: Any, order: Any) -> str:
    services.counter.bump(n=next(_calls), idempotency_key="k")  # state kept between executions
    return "completed"


def _random_run(services: Any, order: Any) -> str:
    services.counter.bump(n=random.random())  # the global random source
    return "completed"


counting_saga = Saga(
    "counting", steps=[Step("counter", "bump")], participants=lambda: {"counter": Counter()}, run=_counting_run
)
random_saga = Saga(
    "random", steps=[Step("counter", "bump")], participants=lambda: {"counter": Counter()}, run=_random_run
)


@pytest.mark.parametrize("saga", [counting_saga, random_saga], ids=lambda s: s.name)
def test_explore_rejects_a_nondeterministic_saga(saga: Saga, tmp_path: Any) -> None:
    with pytest.raises(NondeterminismError) as info:
        explore(saga, settings=hypothesis.settings(database=None), report_dir=tmp_path, max_examples=0, sweep_faults=0)
    message = str(info.value)
    assert f"saga {saga.name!r} is not deterministic" in message
    assert "entry #0" in message  # names the differing entry
    assert "counter.bump#1" in message
    assert "services.clock" in message  # and says what to do
    assert list(tmp_path.iterdir()) == []  # nothing was reported as a failure


def test_a_difference_later_in_the_trace_is_named_precisely() -> None:
    state = {"runs": 0}

    def run(services: Any, order: Any) -> str:
        state["runs"] += 1
        services.counter.bump(n=1)
        services.counter.bump(n=2 if state["runs"] == 1 else 3)
        return "completed"

    saga = Saga("second-differs", steps=[Step("counter", "bump")], participants=lambda: {"counter": Counter()}, run=run)
    with pytest.raises(NondeterminismError) as info:
        explore(saga, settings=hypothesis.settings(database=None), report_dir=None, max_examples=0, sweep_faults=0)
    message = str(info.value)
    assert "entry #1" in message
    assert "entry #0" not in message
    assert "'n': 2" in message
    assert "'n': 3" in message


def test_compare_traces_names_a_different_length_or_status() -> None:
    a = run_plan(order_saga)
    b = run_plan(order_saga, FaultPlan((LoseReply(P("notification.send#1")),)))
    with pytest.raises(NondeterminismError, match="entry #3"):
        compare_traces(order_saga, a, b, "test")
    c = run_plan(order_saga, FaultPlan((Refuse(P("payment.charge#1")),)))
    with pytest.raises(NondeterminismError, match="saga 'order' is not deterministic"):
        compare_traces(order_saga, a, c, "test")
    compare_traces(order_saga, a, run_plan(order_saga), "test")  # equal: nothing raised


def test_a_deterministic_saga_explores_cleanly(tmp_path: Any) -> None:
    result = explore(
        order_saga, settings=hypothesis.settings(database=None), report_dir=tmp_path, max_examples=0, sweep_faults=1
    )
    assert result.ok
    assert result.sweep_executions > 0
