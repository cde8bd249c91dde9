"""Several actors in one execution: two orders for the last unit of stock, the same start
delivered twice, a takeover; the plan's switches decide who moves at each delivery point, for
plain-Python and async sagas alike, and the search finds, shrinks and replays an interleaving."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from saga_verify import Actor, FaultPlan, Ledger, Saga, Step, explore, invariant, replay, run_plan
from saga_verify._reporting import render_timeline
from saga_verify._world import trace_to_json
from saga_verify.errors import PlanError, SagaDefinitionError
from saga_verify.faults import DeliveryPoint, Switch, templates_for
from saga_verify.faults._plan import plan_schema

ORDER_A = {"order_id": "o-1", "sku": "lamp", "amount": 30}
ORDER_B = {"order_id": "o-2", "sku": "lamp", "amount": 30}


class Inventory:
    """One lamp in stock. ``available`` then ``take`` is check-then-act: the race is the saga's."""

    def __init__(self) -> None:
        self.ledger = Ledger()
        self.stock = {"lamp": 1}
        self.seen: set[str] = set()

    def available(self, *, sku: str) -> int:
        return self.stock[sku]

    def take(self, *, sku: str, idempotency_key: str) -> dict[str, str]:
        if idempotency_key not in self.seen:  # an idempotent receiver: a copy takes nothing more
            self.seen.add(idempotency_key)
            self.stock[sku] -= 1
            self.ledger.record("take", 1, sku)
        return {"status": "ok"}

    def put_back(self, *, sku: str, idempotency_key: str) -> dict[str, str]:
        if idempotency_key not in self.seen:
            self.seen.add(idempotency_key)
            self.stock[sku] += 1
            self.ledger.record("put_back", 1, sku)
        return {"status": "ok"}


class Payment:
    def __init__(self) -> None:
        self.ledger = Ledger()

    def charge(self, *, amount: int, idempotency_key: str) -> dict[str, str]:
        self.ledger.record("charge", amount)
        return {"status": "ok"}

    def refund(self, *, amount: int, idempotency_key: str) -> dict[str, str]:
        self.ledger.record("refund", amount)
        return {"status": "ok"}


STEPS = (
    Step("inventory", "available", depends_on=()),
    Step("inventory", "take", "put_back", depends_on=()),
    Step("payment", "charge", "refund"),
)


def participants() -> dict[str, object]:
    return {"inventory": Inventory(), "payment": Payment()}


def run_order(services: Any, order: dict[str, Any]) -> str:
    """Check, then take: correct alone, it oversells when another order moves in between."""
    key = order["order_id"]
    try:
        if services.inventory.available(sku=order["sku"]) < 1:
            return "failed"
        services.inventory.take(sku=order["sku"], idempotency_key=f"{key}:take")
        services.payment.charge(amount=order["amount"], idempotency_key=f"{key}:charge")
    except OSError:
        return "failed"  # a person looks at it; nothing was sold without a charge
    return "completed"


async def arun_order(services: Any, order: dict[str, Any]) -> str:
    key = order["order_id"]
    try:
        if await services.inventory.available(sku=order["sku"]) < 1:
            return "failed"
        await services.inventory.take(sku=order["sku"], idempotency_key=f"{key}:take")
        await services.payment.charge(amount=order["amount"], idempotency_key=f"{key}:charge")
    except OSError:
        return "failed"
    return "completed"


class AsyncInventory(Inventory):
    async def available(self, *, sku: str) -> int:  # type: ignore[override]
        return self.stock[sku]

    async def take(self, *, sku: str, idempotency_key: str) -> dict[str, str]:  # type: ignore[override]
        return super().take(sku=sku, idempotency_key=idempotency_key)

    async def put_back(self, *, sku: str, idempotency_key: str) -> dict[str, str]:  # type: ignore[override]
        return super().put_back(sku=sku, idempotency_key=idempotency_key)


class AsyncPayment(Payment):
    async def charge(self, *, amount: int, idempotency_key: str) -> dict[str, str]:  # type: ignore[override]
        return super().charge(amount=amount, idempotency_key=idempotency_key)

    async def refund(self, *, amount: int, idempotency_key: str) -> dict[str, str]:  # type: ignore[override]
        return super().refund(amount=amount, idempotency_key=idempotency_key)


@invariant(name="stock-never-sold-twice")
def stock_never_sold_twice(execution: Any) -> list[str]:
    """Across instances: no more lamps sold (taken for an order that was charged) than there
    were. Reads every instance's effects (`Execution.effects`, by correlation id)."""
    sold = [
        order
        for order, effects in execution.effects.items()
        if effects.get(("inventory", "take")) and effects.get(("payment", "charge"))
    ]
    return [f"the one lamp was sold {len(sold)} times: to {', '.join(sorted(sold))}"] if len(sold) > 1 else []


def two_orders(run: Any = run_order, make: Any = participants) -> Saga:
    return Saga(
        "two-orders",
        STEPS,
        make,
        run,
        input=ORDER_A,
        actors=(Actor("o-2", input=ORDER_B),),
        invariants=(stock_never_sold_twice,),
    )


def async_participants() -> dict[str, object]:
    return {"inventory": AsyncInventory(), "payment": AsyncPayment()}


SAGAS = {"sync": two_orders(), "async": two_orders(arun_order, async_participants)}
RACE = FaultPlan((Switch(DeliveryPoint("inventory", "take", 1)),))


@pytest.mark.parametrize("flavour", sorted(SAGAS))
def test_without_switches_the_actors_run_one_after_the_other(flavour: str) -> None:
    execution = run_plan(SAGAS[flavour])
    assert [(e.point, e.correlation_id) for e in execution.trace] == [
        ("inventory.available#1", "o-1"),
        ("inventory.take#1", "o-1"),
        ("payment.charge#1", "o-1"),
        ("inventory.available#2", "o-2"),
    ]
    assert [(a.name, a.correlation_id, a.status) for a in execution.actors] == [
        ("o-1", "o-1", "completed"),
        ("o-2", "o-2", "failed"),
    ]
    assert execution.status == "completed"
    assert execution.status_of("o-2") == "failed"


@pytest.mark.parametrize("flavour", sorted(SAGAS))
def test_a_switch_lets_the_second_order_check_before_the_first_takes(flavour: str) -> None:
    execution, violations = replay(SAGAS[flavour], RACE)
    assert [(e.point, e.correlation_id, e.fault) for e in execution.trace] == [
        ("inventory.available#1", "o-1", None),
        ("inventory.available#2", "o-2", None),
        ("inventory.take#2", "o-2", None),
        ("payment.charge#1", "o-2", None),
        ("inventory.take#1", "o-1", "switch"),
        ("payment.charge#2", "o-1", None),
    ]
    assert [a.status for a in execution.actors] == ["completed", "completed"]
    assert [v.invariant for v in violations] == ["stock-never-sold-twice"]
    assert [m.text for m in execution.moments if m.kind == "switch"] == ["o-1 stops before inventory.take#1; o-2 moves"]
    assert {r.correlation_id for r in execution.rows("payment", "charge")} == {"o-1", "o-2"}


@pytest.mark.parametrize("flavour", sorted(SAGAS))
def test_the_same_plan_gives_the_same_trace(flavour: str) -> None:
    first = run_plan(SAGAS[flavour], RACE)
    second = run_plan(SAGAS[flavour], RACE)
    assert trace_to_json(first.trace) == trace_to_json(second.trace)


@pytest.mark.parametrize("flavour", sorted(SAGAS))
def test_the_search_finds_the_race_and_shrinks_it_to_one_switch(flavour: str, tmp_path: Any) -> None:
    result = explore(SAGAS[flavour], max_examples=0, report_dir=tmp_path)
    assert [f.invariants for f in result.failures] == [("stock-never-sold-twice",)]
    failure = result.failures[0]
    assert [f.kind for f in failure.plan.faults] == ["switch"]
    assert failure.plan_path is not None
    loaded = FaultPlan.load(failure.plan_path)
    assert loaded.faults == failure.plan.faults
    _, again = replay(SAGAS[flavour], loaded)
    assert [v.invariant for v in again] == ["stock-never-sold-twice"]


def test_a_switch_round_trips_through_a_plan_file_and_the_schema_knows_it() -> None:
    text = RACE.dumps()
    assert json.loads(text)["faults"] == [{"kind": "switch", "at": "inventory.take#1"}]
    assert FaultPlan.loads(text) == RACE
    assert "switch" in plan_schema()["properties"]["faults"]["items"]["properties"]["kind"]["enum"]


def test_a_switch_is_refused_for_a_saga_without_other_actors() -> None:
    alone = Saga("alone", STEPS, participants, run_order, input=ORDER_A)
    with pytest.raises(PlanError, match=r"switch.*no other actors"):
        run_plan(alone, RACE)
    assert all(t.cls is not Switch for t in templates_for(alone, "inventory", "take"))
    assert templates_for(two_orders(), "inventory", "take")[-1].cls is Switch


def test_the_same_start_delivered_twice_runs_two_actors_on_one_instance() -> None:
    saga = Saga("twice", STEPS, participants, run_order, input=ORDER_A, actors=(Actor("o-1 again", input=ORDER_A),))
    execution = run_plan(saga, FaultPlan((Switch(DeliveryPoint("inventory", "take", 1)),)))
    assert [a.correlation_id for a in execution.actors] == ["o-1", "o-1"]
    assert [e.key for e in execution.trace if e.operation == "take"] == ["o-1:take", "o-1:take"]
    # The inventory dedupes by key and takes once; this payment does not, and charges the order twice.
    assert [len(execution.rows("inventory", "take")), len(execution.rows("payment", "charge"))] == [1, 2]


def test_the_search_finds_the_double_charge_of_a_start_delivered_twice() -> None:
    saga = Saga("twice", STEPS, participants, run_order, input=ORDER_A, actors=(Actor("o-1 again", input=ORDER_A),))
    result = explore(saga, max_examples=0, report_dir=None)
    broken = {f.invariants: [str(x) for x in f.plan.faults] for f in result.failures}
    # One after the other, the second start finds no stock left and fails; between the first's
    # check and its take, it charges the order a second time.
    assert broken[("no_double_charge",)] == ["switch at inventory.take#1"]


def test_a_later_actor_begins_at_its_start_time() -> None:
    saga = Saga(
        "takeover", STEPS, participants, run_order, input=ORDER_A,
        actors=(Actor("second coordinator", input=ORDER_A, start=31.0),),
    )
    execution = run_plan(saga, FaultPlan((Switch(DeliveryPoint("inventory", "take", 1)),)))
    second = [e for e in execution.trace if e.time >= 31.0]
    assert [e.point for e in second[:1]] == ["inventory.available#2"]


def test_actor_declarations_are_checked() -> None:
    with pytest.raises(SagaDefinitionError, match="actor name"):
        Saga("bad", STEPS, participants, run_order, input=ORDER_A, actors=(Actor("o-1", input=ORDER_A),))
    with pytest.raises(SagaDefinitionError, match="Actor"):
        Saga("bad", STEPS, participants, run_order, input=ORDER_A, actors=("o-2",))  # type: ignore[arg-type]
    with pytest.raises(SagaDefinitionError, match="start"):
        Actor("late", start=-1.0)


@pytest.mark.parametrize("flavour", sorted(SAGAS))
def test_the_timeline_shows_whose_turn_it_is(flavour: str) -> None:
    from saga_verify._reporting import render_timeline

    assert render_timeline(run_plan(SAGAS[flavour], RACE)) == "\n".join(
        [
            "Timeline (virtual seconds; actors o-1, o-2):",
            "  #0   t=   0.011  inventory.available#1    sku=lamp  [o-1]",
            "                   -> ok: 1",
            "  ~~   t=   0.024  SWITCH: o-1 stops before inventory.take#1; o-2 moves",
            "  ~~   t=   0.024  actor: o-2 begins",
            "  #1   t=   0.036  inventory.available#2    sku=lamp  [o-2]",
            "                   -> ok: 1",
            "  #2   t=   0.047  inventory.take#2         sku=lamp key=o-2:take  [o-2]",
            "                   -> ok: status=ok",
            "  #3   t=   0.060  payment.charge#1         amount=30 key=o-2:charge  [o-2]",
            "                   -> ok: status=ok",
            "  ~~   t=   0.060  actor: o-2 ends: completed",
            "  #4   t=   0.070  inventory.take#1         sku=lamp key=o-1:take  [o-1]",
            "                   -> ok: status=ok   <- switch",
            "  #5   t=   0.081  payment.charge#2         amount=30 key=o-1:charge  [o-1]",
            "                   -> ok: status=ok",
            "  ~~   t=   0.081  actor: o-1 ends: completed",
            "  => saga outcome: completed",
            "  => actors: o-1: completed; o-2: completed",
        ]
    )


def test_a_budget_spent_by_one_actor_stops_them_all() -> None:
    def forever(services: Any, order: dict[str, Any]) -> str:
        while True:
            services.inventory.available(sku=order["sku"])

    saga = Saga(
        "spinning", STEPS, participants, run_order, input=ORDER_A, max_deliveries=20,
        actors=(Actor("spinner", input=ORDER_B, run=forever),),
    )
    execution = run_plan(saga, FaultPlan((Switch(DeliveryPoint("inventory", "take", 1)),)))
    assert execution.halted is not None
    assert execution.status == "halted"
    assert [a.status for a in execution.actors] == ["halted", "halted"]


def test_hypothesis_alone_finds_the_race_and_coverage_counts_the_switches() -> None:
    import hypothesis

    result = explore(
        SAGAS["sync"], sweep_faults=0, max_examples=1000, report_dir=None, settings=hypothesis.settings(database=None)
    )
    assert [f.found_by for f in result.failures] == ["hypothesis"]
    assert [str(f) for f in result.failures[0].plan.faults] == ["switch at inventory.take#1"]
    assert result.coverage is not None
    data = result.coverage.to_json()
    assert data["kinds"][-1] == "switch"
    assert data["cells"]["switch"]["inventory.take"]["broke"] >= 1


def test_an_instance_ends_when_one_of_its_actors_ends_it() -> None:
    from saga_verify.invariants import terminates

    def in_progress(services: Any, order: dict[str, Any]) -> str:
        return "in progress"  # a start delivered again, answered while the first still runs

    twice = Saga("twice", STEPS, participants, run_order, input=ORDER_A, actors=(Actor("again", input=ORDER_A, run=in_progress),))
    execution = run_plan(twice)
    assert [a.status for a in execution.actors] == ["completed", "in progress"]
    assert execution.status_of("o-1") == "completed"
    assert terminates(execution) == []
    other = Saga("other", STEPS, participants, run_order, input=ORDER_A, actors=(Actor("o-2", input=ORDER_B, run=in_progress),))
    assert [v.message for v in terminates(run_plan(other))] == [
        "saga instance o-2 ended with status 'in progress' (o-2), not one of completed, compensated, failed"
    ]


def test_a_held_request_lands_for_the_instance_that_sent_it() -> None:
    from saga_verify.faults import Delay

    # o-2 moves in between o-1's check and take; its charge (the first) is held past its timeout
    # and lands after both actors ended, when the execution's own instance (o-1) is current again.
    plan = FaultPlan((Switch(DeliveryPoint("inventory", "take", 1)), Delay(DeliveryPoint("payment", "charge", 1), seconds=30.0)))
    execution = run_plan(SAGAS["sync"], plan)
    late = [e for e in execution.trace if e.outcome == "late"]
    assert [(e.point, e.correlation_id) for e in late] == [("payment.charge#1", "o-2")]
    assert sorted(r.correlation_id for r in execution.rows("payment", "charge")) == ["o-1", "o-2"]


def test_each_instance_is_judged_on_its_own_compensations() -> None:
    import dataclasses

    from saga_verify.faults import Refuse
    from saga_verify.reference import order_saga

    two = dataclasses.replace(
        order_saga, name="two reference orders", ref=None,
        actors=(Actor("order-2", input={**order_saga.input, "order_id": "order-2"}),),
    )
    # order-1 is refused its charge (release only), order-2 its shipment (refund, then release):
    # in the trace order-1's release comes before order-2's refund, which is no fault of either.
    plan = FaultPlan((Refuse(DeliveryPoint("payment", "charge", 1)), Refuse(DeliveryPoint("shipping", "create", 1))))
    execution, violations = replay(two, plan)
    assert [a.status for a in execution.actors] == ["compensated", "compensated"]
    assert violations == []


def test_a_budget_spent_by_one_async_actor_stops_them_all() -> None:
    async def forever(services: Any, order: dict[str, Any]) -> str:
        while True:
            await services.inventory.available(sku=order["sku"])

    saga = Saga(
        "spinning", STEPS, async_participants, arun_order, input=ORDER_A, max_deliveries=20,
        actors=(Actor("spinner", input=ORDER_B, run=forever),),
    )
    execution = run_plan(saga, FaultPlan((Switch(DeliveryPoint("inventory", "take", 1)),)))
    assert execution.status == "halted"
    assert [a.status for a in execution.actors] == ["halted", "halted"]


def test_async_and_plain_actors_do_not_mix() -> None:
    with pytest.raises(SagaDefinitionError, match="all 'async def' or none is"):
        Saga("mixed", STEPS, participants, run_order, input=ORDER_A, actors=(Actor("o-2", input=ORDER_B, run=arun_order),))


def test_a_coordinator_crash_among_async_actors_is_refused_and_never_searched() -> None:
    from saga_verify import Durable
    from saga_verify.faults import CoordinatorCrashAfter

    saga = dataclasses.replace(SAGAS["async"], name="async durable", durable=Durable(store=dict))
    with pytest.raises(PlanError, match="coordinator crash among async actors is not supported yet"):
        run_plan(saga, FaultPlan((CoordinatorCrashAfter(DeliveryPoint("inventory", "take", 1)),)))
    kinds = [t.cls.kind for t in templates_for(saga, "inventory", "take")]
    assert "coordinator-crash-after" not in kinds
    assert kinds[-1] == "switch"


def test_a_coordinator_crash_among_plain_actors_kills_one_actor_and_a_fresh_one_of_its_own_recovers() -> None:
    from saga_verify.faults import CoordinatorCrashAfter
    from saga_verify.reference import SUPERSEDED, durable_order_takeover

    kinds = [t.cls.kind for t in templates_for(durable_order_takeover, "payment", "charge")]
    assert kinds[-3:] == ["coordinator-crash-before", "coordinator-crash-after", "switch"]
    # The first coordinator stops before its charge; the takeover (60 s) charges and dies before
    # reading the reply; a fresh takeover coordinator waits out its dead predecessor's lease,
    # charges again under the same key and completes. The first one, woken, is fenced off.
    plan = FaultPlan((Switch(DeliveryPoint("payment", "charge", 1)), CoordinatorCrashAfter(DeliveryPoint("payment", "charge", 2))))
    execution, violations = replay(durable_order_takeover, plan)
    assert violations == []
    assert [(a.name, a.status) for a in execution.actors] == [("order-1", SUPERSEDED), ("takeover", "completed")]
    charges = [e for e in execution.trace if (e.participant, e.operation) == ("payment", "charge")]
    assert [(e.attempt, e.outcome, e.key) for e in charges] == [
        (2, "unread", "order-1:charge:0"), (3, "ok", "order-1:charge:0"), (1, "ok", "order-1:charge:0"),
    ]
    assert charges[1].time - charges[0].time > 29.9  # the fresh coordinator waited for the lease (30 s after the last write)
    assert len(execution.rows("payment", "charge")) == 1
    assert "(recovery 1)" in render_timeline(execution)
