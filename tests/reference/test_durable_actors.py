"""The durable reference saga among several actors: its start command delivered twice. One after
the other, the second start answers the first's outcome; interleaved, it needs a lease it does
not have yet (a strict expected failure, which turns into a failure once leases land)."""

from __future__ import annotations

import dataclasses

import hypothesis
import pytest

from saga_verify import Actor, FaultPlan, explore, replay
from saga_verify.faults import DeliveryPoint, Switch
from saga_verify.reference import durable_order_saga

TWICE = dataclasses.replace(
    durable_order_saga, name="durable_order_twice", ref=None, actors=(Actor("order-1 again", input=durable_order_saga.input),)
)


def test_a_start_delivered_again_after_the_order_ended_answers_its_outcome() -> None:
    execution, violations = replay(TWICE, FaultPlan())
    assert violations == []
    assert [(a.name, a.status) for a in execution.actors] == [("order-1", "completed"), ("order-1 again", "completed")]
    # The second start read the log and called nobody: every delivery is the first coordinator's.
    assert [e.key.rsplit(":", 1)[-1] for e in execution.trace if e.key] == ["0"] * len(execution.trace)


def test_a_start_delivered_again_while_the_order_runs_resumes_it_and_charges_again() -> None:
    # Between the first coordinator's intent and its call, the second start finds the order
    # unfinished, takes it for a dead coordinator's, resumes it with keys of its own epoch and
    # completes it; the first then goes on with its keys: a second charge. A lease (issue 11,
    # item 5) would turn the second start away while the first still owns the order.
    _, violations = replay(TWICE, FaultPlan((Switch(DeliveryPoint("inventory", "reserve", 1)),)))
    assert {v.invariant for v in violations} >= {"no_double_charge"}


@pytest.mark.xfail(strict=True, reason="the durable reference saga has no lease yet: a second start resumes an order in flight")
def test_the_durable_saga_holds_with_its_start_delivered_twice() -> None:
    result = explore(TWICE, max_examples=0, report_dir=None, settings=hypothesis.settings(database=None))
    assert result.ok, [str(f.plan) for f in result.failures]
