"""The invariants about coordinator crashes: a compensation a crash interrupted is resumed, and
no saga instance is left without an owner (among actors: every one ends, or a live lease shows it
still owned); both are standard for durable sagas only."""

from __future__ import annotations

from typing import Any

from saga_verify import Actor, Durable, FaultPlan, Ledger, Saga, Step, replay
from saga_verify.faults import DeliveryPoint, Switch
from saga_verify.invariants import compensation_resumed, saga_owned, standard_invariants
from saga_verify.reference import (
    compensation_not_resumed,
    durable_order_saga,
    durable_order_takeover,
    durable_two_orders,
    order_saga,
)

#: Shipping refuses, so the saga compensates; the coordinator dies before the refund goes out.
INTERRUPTED = FaultPlan.loads(
    '{"faults": [{"kind": "refuse", "at": "shipping.create#1"}, {"kind": "coordinator-crash-before", "at": "payment.refund#1"}]}'
)


def test_an_interrupted_compensation_never_resumed_is_named() -> None:
    execution, _ = replay(compensation_not_resumed, INTERRUPTED.for_saga(compensation_not_resumed))
    found = compensation_resumed(execution)
    messages = sorted(v.message for v in found)
    assert messages == [
        "the coordinator crashed at payment.refund#1 while compensating order-1, and no coordinator resumed it: "
        "inventory.reserve is still in effect and inventory.release was never called after the crash",
        "the coordinator crashed at payment.refund#1 while compensating order-1, and no coordinator resumed it: "
        "payment.charge is still in effect and payment.refund was never called after the crash",
    ]
    owned = saga_owned(execution)
    assert [v.message for v in owned] == [
        "after the coordinator crash at payment.refund#1, saga instance order-1 was left without an owner: the "
        "recovering coordinator ended with status 'compensating', not one of completed, compensated, failed"
    ]


def test_a_resumed_compensation_holds_both() -> None:
    execution, violations = replay(durable_order_saga, INTERRUPTED.for_saga(durable_order_saga))
    assert violations == []
    assert execution.status == "compensated"
    assert compensation_resumed(execution) == []
    assert saga_owned(execution) == []


def test_they_are_standard_only_for_durable_sagas() -> None:
    assert {compensation_resumed, saga_owned} <= set(standard_invariants(durable_order_saga))
    assert not {compensation_resumed, saga_owned} & set(standard_invariants(order_saga))


# -- among actors: every instance ends, or is provably still owned ---------------------------------
def _handing_off(owned: bool, again_at: float) -> Saga:
    """A durable saga whose coordinator takes a 30-second lease and hands the order to a later
    worker ("in progress"); its start is delivered again at ``again_at``, and answered the same."""

    class Ledgered:
        def __init__(self) -> None:
            self.ledger = Ledger()

        def hold(self, *, order_id: str) -> dict[str, str]:
            return {"status": "ok"}

    def run(services: Any, order: Any) -> str:
        store = services.store
        store.setdefault("lease", services.clock.now() + 30.0)
        services.desk.hold(order_id=order["order_id"])
        return "in progress"

    def live(store: dict[str, float], instance: str, now: float) -> bool:
        return store["lease"] > now

    return Saga(
        "handing off",
        [Step("desk", "hold")],
        lambda: {"desk": Ledgered()},
        run,
        input={"order_id": "o-1"},
        durable=Durable(store=dict, owned=live if owned else None),
        actors=(Actor("o-1 again", input={"order_id": "o-1"}, start=again_at),),
    )


def test_an_instance_no_actor_ended_and_nothing_owns_is_named() -> None:
    execution, _ = replay(_handing_off(owned=False, again_at=0.0), FaultPlan())
    assert execution.owned == frozenset()
    assert [v.message for v in saga_owned(execution)] == [
        "saga instance o-1 was left without an owner: none of its actors ended it (o-1 'in progress', o-1 again "
        "'in progress') and nothing shows it still owned (no live lease)"
    ]


def test_a_live_lease_counts_as_owned_and_an_expired_one_does_not() -> None:
    live, _ = replay(_handing_off(owned=True, again_at=10.0), FaultPlan())
    assert live.owned == frozenset({"o-1"})
    assert saga_owned(live) == []
    expired, _ = replay(_handing_off(owned=True, again_at=45.0), FaultPlan())
    assert expired.owned == frozenset()
    assert len(saga_owned(expired)) == 1


def test_the_reference_saga_among_actors_says_what_it_still_owns() -> None:
    # Without a switch the takeover begins at 60 s, finds the order ended, and takes no lease: the
    # first coordinator's lease expired 30 s after its last write.
    execution, violations = replay(durable_order_takeover, FaultPlan())
    assert (violations, execution.owned) == ([], frozenset())
    # Taken over at 60 s: the takeover's lease runs 30 s past its last write, beyond the end.
    execution, violations = replay(durable_order_takeover, FaultPlan((Switch(DeliveryPoint("payment", "charge", 1)),)))
    assert (violations, execution.owned) == ([], frozenset({"order-1"}))


def test_a_compensation_interrupted_in_one_order_says_nothing_of_another() -> None:
    # Order-1 is refused its charge and compensates; its coordinator dies before the release and
    # a fresh one of its own resumes it. Order-2 then completes: its charge stays, rightly.
    plan = FaultPlan.loads(
        '{"faults": [{"kind": "refuse", "at": "payment.charge#1"}, {"kind": "coordinator-crash-before", "at": "inventory.release#1"}]}'
    )
    execution, violations = replay(durable_two_orders, plan)
    assert violations == []
    assert [(a.name, a.status) for a in execution.actors] == [("order-1", "compensated"), ("order-2", "completed")]
    assert compensation_resumed(execution) == []
