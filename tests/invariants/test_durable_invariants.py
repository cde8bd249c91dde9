"""The invariants about coordinator crashes: a compensation a crash interrupted is resumed, and
no saga instance is left without an owner; both are standard for durable sagas only."""

from __future__ import annotations

from saga_verify import FaultPlan, replay
from saga_verify.invariants import compensation_resumed, saga_owned, standard_invariants
from saga_verify.reference import compensation_not_resumed, durable_order_saga, order_saga

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
