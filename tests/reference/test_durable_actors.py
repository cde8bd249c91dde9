"""The durable reference saga among several actors: its start command delivered twice, and a
second coordinator taking the order over. A lease turns a second start away while the first
coordinator holds the order; after the lease expired a takeover gets a higher fencing token, and
the first coordinator's late writes are refused."""

from __future__ import annotations

import dataclasses

import hypothesis

from saga_verify import Actor, FaultPlan, explore, replay
from saga_verify.faults import DeliveryPoint, Switch
from saga_verify.reference import (
    IN_PROGRESS,
    SUPERSEDED,
    durable_order_saga,
    durable_order_takeover,
    lease_without_fencing,
)

TWICE = dataclasses.replace(
    durable_order_saga, name="durable_order_twice", ref=None, actors=(Actor("order-1 again", input=durable_order_saga.input),)
)


def _no_db() -> hypothesis.settings:
    return hypothesis.settings(database=None)


def test_a_start_delivered_again_after_the_order_ended_answers_its_outcome() -> None:
    execution, violations = replay(TWICE, FaultPlan())
    assert violations == []
    assert [(a.name, a.status) for a in execution.actors] == [("order-1", "completed"), ("order-1 again", "completed")]
    # The second start read the log and called nobody: every delivery is the first coordinator's.
    assert [e.key.rsplit(":", 1)[-1] for e in execution.trace if e.key] == ["0"] * len(execution.trace)


def test_a_start_delivered_again_while_the_order_runs_is_turned_away_by_the_lease() -> None:
    # Between the first coordinator's intent and its call the second start arrives: the first
    # holds the order's lease, so the second answers "in progress" and calls nobody.
    execution, violations = replay(TWICE, FaultPlan((Switch(DeliveryPoint("inventory", "reserve", 1)),)))
    assert violations == []
    assert [(a.name, a.status) for a in execution.actors] == [("order-1", "completed"), ("order-1 again", IN_PROGRESS)]
    assert len(execution.rows("payment", "charge")) == 1
    second = [e for e in execution.trace if e.correlation_id == "order-1" and e.key and not e.key.endswith(":0")]
    assert second == []


def test_the_durable_saga_holds_with_its_start_delivered_twice() -> None:
    result = explore(TWICE, max_examples=0, report_dir=None, settings=_no_db())
    assert result.ok, [str(f.plan) for f in result.failures]
    assert result.sweep_complete


def test_a_takeover_after_the_lease_expired_finishes_the_order_and_fences_the_first_coordinator() -> None:
    # The first coordinator logs its charge's intent and stops just before the call (switch).
    # The takeover begins at 60 s, after the first one's 30-second lease expired, takes the lease
    # with a higher token and finishes the order; then the first wakes, its call goes out under
    # the key of its intent (answered as before: no second charge), and its next write is refused.
    plan = FaultPlan((Switch(DeliveryPoint("payment", "charge", 1)),))
    execution, violations = replay(durable_order_takeover, plan)
    assert violations == []
    assert [(a.name, a.status) for a in execution.actors] == [("order-1", SUPERSEDED), ("takeover", "completed")]
    assert execution.status_of("order-1") == "completed"
    charges = [e for e in execution.trace if (e.participant, e.operation) == ("payment", "charge")]
    # The takeover's charge (the second attempt), then the first coordinator's late one.
    assert [e.attempt for e in charges] == [2, 1]
    assert charges[0].key == charges[1].key == "order-1:charge:0"  # the key of the first one's intent
    assert charges[1].time >= 60.0
    assert len(execution.rows("payment", "charge")) == 1
    # After its late call the first coordinator called nobody: its outcome's write was refused.
    assert charges[1] == execution.trace[-1]


def test_the_takeover_holds_under_the_search_with_switches_and_coordinator_crashes_on() -> None:
    result = explore(durable_order_takeover, max_examples=200, report_dir=None, settings=_no_db(), seed=0)
    assert result.ok, [str(f.plan) for f in result.failures]
    assert result.sweep_complete
    coverage = result.coverage
    assert coverage is not None
    for kind in ("switch", "coordinator-crash-before", "coordinator-crash-after"):
        assert sum(coverage.cell(kind, p, o).plans for p, o in coverage.operations) > 10, kind


def test_without_fencing_the_first_coordinator_goes_on_and_ships_again() -> None:
    # The same plan on a saga whose writes carry no token: the first coordinator, taken over,
    # wakes, logs intents under keys of its own and ships and notifies a second time.
    plan = FaultPlan((Switch(DeliveryPoint("payment", "charge", 1)),))
    execution, violations = replay(lease_without_fencing, plan)
    assert {"no_double_create", "no_double_send"} <= {v.invariant for v in violations}
    assert [e.key for e in execution.trace][-2:] == ["order-1:ship:0", "order-1:notify:0"]
