"""The choreographed order saga: its happy and compensating paths, consumers that dead-letter what
they cannot read, its event schemas, and every broken variant found by the search."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import hypothesis
import jsonschema
import pytest

from saga_verify import Choreography, FaultPlan, Handler, explore, replay, run_plan
from saga_verify.faults import Corrupt, DeliveryPoint, Refuse
from saga_verify.invariants import invariants_for
from saga_verify.reference import choreographed_order_saga, choreographed_variants
from saga_verify.reference._choreographed import PaymentService
from saga_verify.reference._choreography_events import EVENT_TYPES, envelope, event_schema, invalid

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "contracts" / "events" / "choreography"


def violations(execution: Any) -> list[str]:
    return [str(v) for inv in invariants_for(execution.saga) for v in inv(execution)]


def types(execution: Any) -> list[str]:
    return [m.type for m in execution.bus.messages]


def test_the_happy_path_confirms_the_order_and_notifies_last() -> None:
    execution = run_plan(choreographed_order_saga)
    assert execution.status == "completed"
    assert types(execution) == [
        "order.placed", "stock.reserved", "payment.captured", "shipment.created", "order.confirmed", "notification.sent",
    ]
    assert violations(execution) == []
    # Every event is in the canonical envelope and caused by the one before it.
    messages = execution.bus.messages
    assert all(invalid(m.envelope, m.type) is None for m in messages)
    assert [m.envelope["causation_id"] for m in messages] == [None, *(m.id for m in messages[:-1])]


@pytest.mark.parametrize(
    ("refused", "compensations"),
    [
        ("inventory.reserve#1", ["stock.unavailable", "order.compensated"]),
        ("payment.charge#1", ["payment.declined", "stock.released", "order.compensated"]),
        ("shipping.create#1", ["shipment.failed", "payment.refunded", "stock.released", "order.compensated"]),
    ],
)
def test_a_refusal_drives_the_compensations(refused: str, compensations: list[str]) -> None:
    execution = run_plan(choreographed_order_saga, FaultPlan((Refuse(DeliveryPoint.parse(refused)),)))
    assert execution.status == "compensated"
    assert types(execution)[-len(compensations) :] == compensations
    assert violations(execution) == []


class Feeder:
    """Publishes one message, whatever it is, to the payment service."""

    def __init__(self, message: Any) -> None:
        self.message = message

    def start(self, order: Any, bus: Any) -> None:
        bus.publish(self.message)


GOOD = envelope(
    "stock.reserved", source="inventory", correlation_id="order-1", causation_id="order-1:order.placed",
    key="order-1:stock.reserved", data={"reservation_id": "res-1", "qty": 2}, now=0.5,
)


def _with(**changes: Any) -> dict[str, Any]:
    return {**GOOD, **changes}


BAD = {
    "not an envelope": ("stock.reserved as text", "not an envelope: a str"),
    "unknown type": (_with(type="stock.teleported"), "unknown event type 'stock.teleported'"),
    "unknown version": (_with(version=2), "unknown envelope version 2; this consumer reads 1"),
    "no correlation id": ({k: v for k, v in GOOD.items() if k != "correlation_id"}, "envelope lacks correlation_id"),
    "payload fails its schema": (_with(data={"reservation_id": "res-1", "qty": 0}), "data.qty must be at least 1, got 0"),
    "unknown payload field": (_with(data={"reservation_id": "res-1", "qty": 1, "x": 1}), "data has unknown field(s) x"),
}


def _fed(message: Any) -> Choreography:
    return Choreography(
        "bad-input",
        lambda: {"feeder": Feeder(message), "payment": PaymentService()},
        (Handler("payment", "stock.reserved", "charge"),),
        start="feeder.start",
        outcome=lambda services, corr: "failed",
    )


#: What the bus routes to the payment consumer (published as a stock.reserved).
ROUTED = ["unknown version", "no correlation id", "payload fails its schema", "unknown payload field"]


@pytest.mark.parametrize("case", ROUTED)
def test_a_consumer_dead_letters_what_it_cannot_read_with_the_reason(case: str) -> None:
    message, reason = BAD[case]
    execution = run_plan(_fed(message).saga)
    [dead] = execution.bus.dead_letters
    assert (dead.reason, dead.rejected, dead.attempts) == (reason, True, 1)
    assert execution.participants["payment"].saved["charges"] == []


def test_a_message_mangled_on_its_way_is_dead_lettered_with_the_reason() -> None:
    execution = run_plan(_fed(GOOD).saga, FaultPlan((Corrupt(DeliveryPoint("payment", "charge", 1)),)))
    [dead] = execution.bus.dead_letters
    assert (dead.reason, dead.rejected) == ("not an envelope: a str", True)
    assert execution.participants["payment"].saved["charges"] == []


def test_a_consumer_refuses_a_type_it_does_not_know_or_did_not_subscribe_to() -> None:
    assert invalid(BAD["unknown type"][0], "stock.reserved") == "unknown event type 'stock.teleported'"
    assert invalid(_with(type="payment.captured"), "stock.reserved") == "a payment.captured delivered where stock.reserved was subscribed"


def test_the_checked_in_schemas_are_the_generated_ones() -> None:
    on_disk = {p.name.removesuffix(".schema.json"): json.loads(p.read_text(encoding="utf-8")) for p in SCHEMAS.glob("*.schema.json")}
    assert set(on_disk) == set(EVENT_TYPES)
    for event_type, schema in on_disk.items():
        assert schema == event_schema(event_type), f"{event_type}: regenerate with write_event_schemas"


def test_json_schema_and_the_consumers_check_agree() -> None:
    validator = jsonschema.Draft202012Validator(json.loads((SCHEMAS / "stock.reserved.schema.json").read_text(encoding="utf-8")))
    assert validator.is_valid(GOOD)
    assert invalid(GOOD, "stock.reserved") is None
    for case, (message, _) in BAD.items():
        assert not validator.is_valid(message), case
        assert invalid(message, "stock.reserved") is not None, case


def _search(saga: Any) -> Any:
    return explore(saga, max_examples=200, sweep_faults=2, settings=hypothesis.settings(database=None), all_failures=False)


#: Each broken variant: the invariants its minimal plan breaks, and that plan.
EXPECTED = {
    "non_idempotent_consumer": (("no_double_effect",), "lose-reply at inventory.publish#1"),
    "order_assuming_consumer": (("services_agree",), "fail at order.on_payment_captured#1"),
    "dual_write_publish": (("services_agree",), "crash at order.publish#1"),
    "missing_compensation_handler": (("settles", "services_agree"), "refuse at shipping.create#1"),
    "poison_blocks_queue": (("settles",), "corrupt at payment.charge#1"),
    "correlation_dropped": (("correlated_events",), "lose-reply at payment.publish#1"),
    "ack_before_commit": (("settles",), "crash at inventory.reserve#1"),
}


@pytest.mark.parametrize("variant", [v for v in choreographed_variants() if v.broken], ids=lambda v: v.name)
def test_the_search_finds_each_broken_variant_with_a_one_fault_plan(variant: Any) -> None:
    assert variant.kind == "choreographed"
    assert variant.runtimes == ("sim",)
    result = _search(variant.saga)
    first = result.failures[0]
    assert (first.invariants, str(first.plan)) == EXPECTED[variant.name]
    # The same plan, replayed, breaks the same way; the correct saga holds under it.
    assert {v.invariant for v in replay(variant.saga, first.plan)[1]} == set(first.invariants)
    assert replay(choreographed_order_saga, first.plan.for_saga(choreographed_order_saga))[1] == []


def test_every_variant_is_listed_once_after_the_correct_saga() -> None:
    found = choreographed_variants()
    assert found[0].saga is choreographed_order_saga
    assert not found[0].broken
    assert {v.name for v in found[1:]} == set(EXPECTED)
    assert all(v.bug for v in found[1:])


@pytest.mark.slow
def test_the_correct_saga_holds_under_the_demo_search() -> None:
    result = _search(choreographed_order_saga)
    assert result.failures == ()
    assert result.executions > 1000


def test_outbox_published_breaks_on_an_event_committed_and_never_published() -> None:
    from saga_verify.reference._choreographed import outbox_published

    execution = run_plan(choreographed_order_saga)
    assert outbox_published(execution) == []
    inventory = execution.participants["inventory"]
    inventory.state["outbox"][0]["sent"] = False
    inventory.commit()
    [violation] = outbox_published(execution)
    assert violation.message == "inventory committed stock.reserved order-1:stock.reserved and never published it"


def test_services_agree_breaks_on_a_confirmed_order_without_its_shipment() -> None:
    from saga_verify.reference._choreographed import services_agree

    execution = run_plan(choreographed_order_saga)
    assert services_agree(execution) == []
    shipping = execution.participants["shipping"]
    shipping.state["shipments"].clear()
    shipping.commit()
    [violation] = services_agree(execution)
    assert violation.message == "the order service confirmed the order, but there is no shipment for it"
