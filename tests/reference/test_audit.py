"""The audit, the reference consumer of events: it reads only what it needs, refuses what it
cannot read naming the field, counts a redelivered event once, and reconciles each order."""

from __future__ import annotations

import json
from typing import Any

import pytest

from saga_verify.reference._audit import Audit, EventRejected, read_event

SEQ = iter(range(1, 10_000))


def event(event_type: str, order: str = "o-1", source: str | None = None, id: str | None = None, **data: Any) -> dict[str, Any]:
    return {
        "type": event_type,
        "version": 1,
        "id": id or f"e-{next(SEQ)}",
        "source": source or event_type.split(".")[0],
        "correlation_id": order,
        "data": data,
        "occurred_at": "2026-01-01T00:00:00Z",
    }


def audit_of(*events: dict[str, Any]) -> Audit:
    audit = Audit()
    for e in events:
        audit.handle(json.dumps(e))
    return audit


CHARGE = event("payment.charged", charge_id="ch-1", amount=100)
RESERVE = event("stock.reserved", reservation_id="r-1", qty=2)
SHIP = event("shipment.created", shipment_id="s-1")


def test_a_completed_order_with_one_of_each_adds_up() -> None:
    assert audit_of(RESERVE, CHARGE, SHIP, event("notification.sent", message_id="m"), event("order.completed", order_id="o-1")).findings() == []


def test_a_redelivered_event_counts_once() -> None:
    audit = Audit()
    assert audit.handle(CHARGE) is True
    assert audit.handle(json.dumps(CHARGE).encode()) is False
    audit.handle(RESERVE)
    audit.handle(SHIP)
    audit.handle(event("order.completed", order_id="o-1"))
    assert audit.findings() == []


def test_the_same_id_from_another_source_is_another_event() -> None:
    audit = Audit()
    assert audit.handle(event("payment.charged", id="x-1", charge_id="ch-1", amount=1))
    assert audit.handle(event("stock.reserved", id="x-1", reservation_id="r", qty=1))


def test_a_double_charge_is_found() -> None:
    audit = audit_of(RESERVE, CHARGE, event("payment.charged", charge_id="ch-2", amount=100), SHIP, event("order.completed", order_id="o-1"))
    assert audit.findings() == [
        "o-1: 2 charges (ch-1, ch-2), not one",
        "o-1: completed with 2 standing charges, not one",
    ]


def test_a_compensated_order_must_leave_nothing_standing() -> None:
    audit = audit_of(
        RESERVE, CHARGE, SHIP,
        event("stock.released", reservation_id="r-1", qty=2),
        event("shipment.cancelled", shipment_id="s-1"),
        event("order.compensated", order_id="o-1"),
    )  # fmt: skip
    assert audit.findings() == ["o-1: compensated, but charge ch-1 still stands"]
    audit.handle(event("payment.refunded", charge_id="ch-1", amount=100))
    assert audit.findings() == []


def test_a_refund_larger_than_its_charge_is_found() -> None:
    audit = audit_of(CHARGE, event("payment.refunded", charge_id="ch-1", amount=100), event("payment.refunded", charge_id="ch-1", amount=100))
    assert audit.findings() == ["o-1: charge ch-1 undone by 200, more than the 100 it took"]


def test_a_compensated_order_whose_customer_was_told_otherwise_is_found() -> None:
    audit = audit_of(event("notification.sent", message_id="m"), event("order.compensated", order_id="o-1"))
    assert audit.findings() == ["o-1: compensated, but the customer was told it is on its way"]


def test_orders_are_reconciled_apart_and_in_order() -> None:
    audit = audit_of(event("order.failed", "o-2", order_id="o-2"), event("order.failed", "o-1", order_id="o-1"))
    assert audit.findings() == ["o-1: failed: an operator must act", "o-2: failed: an operator must act"]


def test_fields_the_audit_does_not_read_may_come_and_go() -> None:
    lean = {k: v for k, v in CHARGE.items() if k != "occurred_at"}
    assert read_event({**lean, "region": "eu", "data": {**CHARGE["data"], "currency": "EUR"}}).data == {"charge_id": "ch-1", "amount": 100}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"[1]", "an event is a JSON object, not list"),
        ({**CHARGE, "version": 2}, "version 2 of 'payment.charged' is not known (this audit reads version 1)"),
        ({**CHARGE, "type": "payment.captured"}, "type 'payment.captured' is not known"),
        ({k: v for k, v in CHARGE.items() if k != "correlation_id"}, "correlation_id is missing"),
        ({**CHARGE, "data": {"charge_id": "ch-1"}}, "data.amount is missing"),
        ({**CHARGE, "data": {"charge_id": "ch-1", "amount": "100"}}, 'data.amount is "100", not a int'),
        ({**CHARGE, "data": {"charge_id": "ch-1", "amount": True}}, "data.amount is true, not a int"),
        ({**CHARGE, "version": "1"}, 'version is "1", not a int'),
    ],
)
def test_an_unreadable_event_is_refused_naming_why(body: Any, reason: str) -> None:
    audit = Audit()
    with pytest.raises(EventRejected) as caught:
        audit.handle(body)
    assert str(caught.value) == reason or (reason == "not JSON" and str(caught.value).startswith("not JSON: "))
    assert audit.orders == {}
