"""The order service's consumer pacts: its HTTP client, driven against pact's mock server for each
participant, writes contracts/pacts/order-<participant>.json. Forward steps, compensations,
idempotent replays, business refusals and idempotency-key reuse are all part of the contract."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from saga_verify.contracts import consumer_pact, pact_path
from saga_verify.reference import _order_client as order

PACTS = Path(__file__).resolve().parents[2] / "contracts" / "pacts"
JSON = "application/json"


def like(example: str) -> Any:
    """Any string: ids differ from provider to provider (``ch-1``, ``ch_9f2``, a UUID)."""
    from pact import match

    return match.str(example)


@dataclass(frozen=True)
class Expectation:
    """One interaction the order service relies on, and the client call that makes it."""

    provider: str
    description: str
    path: str
    key: str
    request: dict[str, Any]
    call: Callable[[httpx.Client], order.Reply]
    status: int
    response: dict[str, Any]
    given: tuple[tuple[str, dict[str, Any]], ...] = ()
    replayed: bool = False

    def __str__(self) -> str:
        return f"{self.provider}: {self.description}"


def charge_made(n: int) -> tuple[str, dict[str, Any]]:
    return ("a charge was made", {"order_id": f"order-{n}", "amount": 100, "key": f"order-{n}:charge"})


def reservation_made(n: int) -> tuple[str, dict[str, Any]]:
    return ("a reservation was made", {"order_id": f"order-{n}", "sku": "sku-1", "qty": 2, "key": f"order-{n}:reserve"})


def shipment_created(n: int) -> tuple[str, dict[str, Any]]:
    params = {"order_id": f"order-{n}", "reservation_id": "res-1", "key": f"order-{n}:ship"}
    return ("a shipment was created", params)


def sent(n: int) -> tuple[str, dict[str, Any]]:
    params = {"order_id": f"order-{n}", "message": f"order order-{n} is on its way", "key": f"order-{n}:notify"}
    return ("a notification was sent", params)


def ok(**fields: Any) -> dict[str, Any]:
    return {"status": "ok", **fields}


REJECTED = {"status": "rejected", "reason": like("idempotency key was used for a different request")}

PAYMENT = [
    Expectation(
        "payment", "a charge", "/charges", "order-1:charge", {"order_id": "order-1", "amount": 100},
        lambda c: order.charge(c, order_id="order-1", amount=100, idempotency_key="order-1:charge"),
        201, ok(charge_id=like("ch-1")),
    ),
    Expectation(
        "payment", "a charge replayed with its idempotency key", "/charges", "order-2:charge",
        {"order_id": "order-2", "amount": 100},
        lambda c: order.charge(c, order_id="order-2", amount=100, idempotency_key="order-2:charge"),
        201, ok(charge_id=like("ch-1")), given=(charge_made(2),), replayed=True,
    ),
    Expectation(
        "payment", "a charge that is declined", "/charges", "order-3:charge", {"order_id": "order-3", "amount": 100},
        lambda c: order.charge(c, order_id="order-3", amount=100, idempotency_key="order-3:charge"),
        402, {"status": "refused", "reason": "card_declined"}, given=(("the next charge is declined", {}),),
    ),
    Expectation(
        "payment", "a charge that reuses the idempotency key of another charge", "/charges", "order-4:charge",
        {"order_id": "order-4", "amount": 250},
        lambda c: order.charge(c, order_id="order-4", amount=250, idempotency_key="order-4:charge"),
        422, REJECTED, given=(charge_made(4),),
    ),
    Expectation(
        "payment", "a refund of a charge", "/refunds", "order-5:refund", {"charge_key": "order-5:charge"},
        lambda c: order.refund(c, charge_key="order-5:charge", idempotency_key="order-5:refund"),
        200, ok(refunded=like("ch-1")), given=(charge_made(5),),
    ),
    Expectation(
        "payment", "a refund replayed with its idempotency key", "/refunds", "order-6:refund",
        {"charge_key": "order-6:charge"},
        lambda c: order.refund(c, charge_key="order-6:charge", idempotency_key="order-6:refund"),
        200, ok(refunded=like("ch-1")), replayed=True,
        given=(("a charge was made and refunded", {**charge_made(6)[1], "refund_key": "order-6:refund"}),),
    ),
    Expectation(
        "payment", "a refund of a charge that never arrived", "/refunds", "order-7:refund",
        {"charge_key": "order-7:charge"},
        lambda c: order.refund(c, charge_key="order-7:charge", idempotency_key="order-7:refund"),
        200, ok(refunded=None),
    ),
]  # fmt: skip

INVENTORY = [
    Expectation(
        "inventory", "a reservation", "/reservations", "order-1:reserve",
        {"order_id": "order-1", "sku": "sku-1", "qty": 2},
        lambda c: order.reserve(c, order_id="order-1", sku="sku-1", qty=2, idempotency_key="order-1:reserve"),
        201, ok(reservation_id=like("res-1")),
    ),
    Expectation(
        "inventory", "a reservation replayed with its idempotency key", "/reservations", "order-2:reserve",
        {"order_id": "order-2", "sku": "sku-1", "qty": 2},
        lambda c: order.reserve(c, order_id="order-2", sku="sku-1", qty=2, idempotency_key="order-2:reserve"),
        201, ok(reservation_id=like("res-1")), given=(reservation_made(2),), replayed=True,
    ),
    Expectation(
        "inventory", "a reservation of an item out of stock", "/reservations", "order-3:reserve",
        {"order_id": "order-3", "sku": "sku-1", "qty": 2},
        lambda c: order.reserve(c, order_id="order-3", sku="sku-1", qty=2, idempotency_key="order-3:reserve"),
        409, {"status": "refused", "reason": "out_of_stock"}, given=(("the next reservation is out of stock", {}),),
    ),
    Expectation(
        "inventory", "a reservation that reuses the idempotency key of another reservation", "/reservations",
        "order-4:reserve", {"order_id": "order-4", "sku": "sku-1", "qty": 5},
        lambda c: order.reserve(c, order_id="order-4", sku="sku-1", qty=5, idempotency_key="order-4:reserve"),
        422, REJECTED, given=(reservation_made(4),),
    ),
    Expectation(
        "inventory", "a release of a reservation", "/releases", "order-5:release", {"reserve_key": "order-5:reserve"},
        lambda c: order.release(c, reserve_key="order-5:reserve", idempotency_key="order-5:release"),
        200, ok(released=like("res-1")), given=(reservation_made(5),),
    ),
    Expectation(
        "inventory", "a release of a reservation that never arrived", "/releases", "order-6:release",
        {"reserve_key": "order-6:reserve"},
        lambda c: order.release(c, reserve_key="order-6:reserve", idempotency_key="order-6:release"),
        200, ok(released=None),
    ),
]  # fmt: skip

SHIPPING = [
    Expectation(
        "shipping", "a shipment", "/shipments", "order-1:ship", {"order_id": "order-1", "reservation_id": "res-1"},
        lambda c: order.create_shipment(c, order_id="order-1", reservation_id="res-1", idempotency_key="order-1:ship"),
        201, ok(shipment_id=like("sh-1")),
    ),
    Expectation(
        "shipping", "a shipment replayed with its idempotency key", "/shipments", "order-2:ship",
        {"order_id": "order-2", "reservation_id": "res-1"},
        lambda c: order.create_shipment(c, order_id="order-2", reservation_id="res-1", idempotency_key="order-2:ship"),
        201, ok(shipment_id=like("sh-1")), given=(shipment_created(2),), replayed=True,
    ),
    Expectation(
        "shipping", "a shipment to an address that cannot be delivered to", "/shipments", "order-3:ship",
        {"order_id": "order-3", "reservation_id": "res-1"},
        lambda c: order.create_shipment(c, order_id="order-3", reservation_id="res-1", idempotency_key="order-3:ship"),
        409, {"status": "refused", "reason": "address_undeliverable"},
        given=(("the next shipment is undeliverable", {}),),
    ),
    Expectation(
        "shipping", "a cancellation of a shipment", "/cancellations", "order-4:cancel", {"shipment_key": "order-4:ship"},
        lambda c: order.cancel_shipment(c, shipment_key="order-4:ship", idempotency_key="order-4:cancel"),
        200, ok(cancelled=like("sh-1")), given=(shipment_created(4),),
    ),
    Expectation(
        "shipping", "a cancellation of a shipment that never arrived", "/cancellations", "order-5:cancel",
        {"shipment_key": "order-5:ship"},
        lambda c: order.cancel_shipment(c, shipment_key="order-5:ship", idempotency_key="order-5:cancel"),
        200, ok(cancelled=None),
    ),
]  # fmt: skip

NOTIFICATION = [
    Expectation(
        "notification", "a notification", "/notifications", "order-1:notify",
        {"order_id": "order-1", "message": "order order-1 is on its way"},
        lambda c: order.send_notification(
            c, order_id="order-1", message="order order-1 is on its way", idempotency_key="order-1:notify"
        ),
        201, ok(message_id=like("msg-1")),
    ),
    Expectation(
        "notification", "a notification replayed with its idempotency key", "/notifications", "order-2:notify",
        {"order_id": "order-2", "message": "order order-2 is on its way"},
        lambda c: order.send_notification(
            c, order_id="order-2", message="order order-2 is on its way", idempotency_key="order-2:notify"
        ),
        201, ok(message_id=like("msg-1")), given=(sent(2),), replayed=True,
    ),
    Expectation(
        "notification", "a notification that reuses the idempotency key of another notification", "/notifications",
        "order-3:notify", {"order_id": "order-3", "message": "a different message"},
        lambda c: order.send_notification(
            c, order_id="order-3", message="a different message", idempotency_key="order-3:notify"
        ),
        422, REJECTED, given=(sent(3),),
    ),
]  # fmt: skip

EXPECTATIONS = [*PAYMENT, *INVENTORY, *SHIPPING, *NOTIFICATION]


@pytest.mark.parametrize("expectation", EXPECTATIONS, ids=str)
def test_order_service_contract(expectation: Expectation) -> None:
    e = expectation
    with consumer_pact("order", e.provider, PACTS) as pact:
        interaction = pact.upon_receiving(e.description)
        for state, params in e.given:
            interaction.given(state, params)
        (
            interaction.with_request("POST", e.path)
            .with_header("Idempotency-Key", e.key)
            .with_body(e.request, JSON)
            .will_respond_with(e.status)
            .with_body(e.response, JSON)
        )
        if e.replayed:
            interaction.with_header("Idempotency-Replayed", "true", "Response")
        with pact.serve(addr="127.0.0.1") as server, httpx.Client(base_url=str(server.url)) as client:
            reply = e.call(client)

    # What the saga reads from the reply: its status class, the replay flag and the body.
    assert reply.status_code == e.status
    assert reply.replayed is e.replayed
    assert reply.body["status"] == e.response["status"]
    assert (reply.ok, reply.refused, reply.rejected) == (e.status < 300, e.status in (402, 409), e.status == 422)


def test_every_participant_and_kind_of_interaction_is_covered() -> None:
    providers = {e.provider for e in EXPECTATIONS}
    assert providers == {"inventory", "payment", "shipping", "notification"}
    paths = {e.path for e in EXPECTATIONS}
    assert paths == {
        "/reservations",
        "/releases",
        "/charges",
        "/refunds",
        "/shipments",
        "/cancellations",
        "/notifications",
    }
    assert {e.status for e in EXPECTATIONS} == {200, 201, 402, 409, 422}
    assert {e.provider for e in EXPECTATIONS if e.replayed} == providers
    for provider in providers:
        descriptions = [e.description for e in EXPECTATIONS if e.provider == provider]
        assert len(descriptions) == len(set(descriptions)), provider


@pytest.mark.parametrize("provider", ["inventory", "payment", "shipping", "notification"])
def test_the_pacts_hold_no_interaction_that_no_test_declares_any_more(provider: str) -> None:
    # Pacts are merged, not rewritten: an interaction whose test was renamed or removed stays in
    # the file until the file is deleted and the consumer tests run again.
    path = pact_path(PACTS, "order", provider)
    declared = {e.description for e in EXPECTATIONS if e.provider == provider}
    written = json.loads(path.read_text())["interactions"] if path.exists() else []
    stale = {i["description"] for i in written} - declared
    assert not stale, f"{path} holds interactions no test declares: {sorted(stale)}; delete it and rerun this module"
