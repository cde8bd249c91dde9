"""The order service (``POST /orders``): it runs the orchestrated saga against the four
participant services over HTTP (here: their apps in this process), keeps the Idempotency-Key
rules, places an order id once, publishes the outcome, survives a restart, and answers a broken
participant or bad input without a 5xx."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from saga_verify._world._asgi import SyncASGITransport
from saga_verify.reference import OrderSaga
from saga_verify.reference._audit import Audit
from saga_verify.reference.services import create_app
from saga_verify.reference.services._order_app import create_order_app

PARTICIPANTS = ("inventory", "payment", "shipping", "notification")
KEY = "Idempotency-Key"
ORDER = {"order_id": "o-1", "sku": "sku-1", "qty": 2, "amount": 100}


class Services:
    """The four participant apps and an order app in front of them, all in this process."""

    def __init__(self, *, saga_class: type[OrderSaga] = OrderSaga, store_path: Path | None = None, **replace: Any) -> None:
        self.apps = {name: replace.get(name) or create_app(name, inspect=True) for name in PARTICIPANTS}
        self.order_app = create_order_app(
            {name: SyncASGITransport(app) for name, app in self.apps.items()}, saga_class=saga_class, store_path=store_path
        )
        self.order = httpx.Client(transport=SyncASGITransport(self.order_app), base_url="http://order")
        self.clients = {name: httpx.Client(transport=SyncASGITransport(app), base_url=f"http://{name}") for name, app in self.apps.items()}

    def close(self) -> None:
        for client in [self.order, *self.clients.values()]:
            client.close()
        self.order_app.state.close()

    def place(self, body: Any = None, key: str | None = None) -> httpx.Response:
        return self.order.post("/orders", json=ORDER if body is None else body, headers={KEY: key} if key else {})

    def ledger(self, name: str) -> list[str]:
        return [row["action"] for row in self.clients[name].get("/_inspect/ledger").json()]

    def audit(self) -> Audit:
        audit = Audit()
        for client in [self.order, *self.clients.values()]:
            page = client.get("/events")
            if page.status_code != 200:
                continue  # a stand-in that publishes nothing
            for event in page.json()["events"]:
                audit.handle(event)
        return audit


@pytest.fixture
def make():
    """``make(**options)`` -> `Services`, closed at the end of the test."""
    made: list[Services] = []

    def build(**options: Any) -> Services:
        made.append(Services(**options))
        return made[-1]

    yield build
    for services in made:
        services.close()


def test_an_order_runs_its_saga_to_completion(make) -> None:
    services = make()
    placed = services.place(key="k1")
    assert (placed.status_code, placed.json()) == (201, {"status": "ok", "order_id": "o-1", "outcome": "completed"})
    assert {name: services.ledger(name) for name in PARTICIPANTS} == {
        "inventory": ["reserve"], "payment": ["charge"], "shipping": ["create"], "notification": ["send"],
    }
    told = services.order.get("/orders/o-1")
    assert told.json() == {**ORDER, "outcome": "completed", "reason": None}
    assert services.audit().findings() == []
    assert [e["type"] for e in services.order.get("/events").json()["events"]] == ["order.completed"]


def test_a_repeat_with_the_same_key_is_a_replay_and_runs_nothing(make) -> None:
    services = make()
    first = services.place(key="k1")
    again = services.place(key="k1")
    assert (again.status_code, again.json(), again.headers["Idempotency-Replayed"]) == (201, first.json(), "true")
    assert services.ledger("payment") == ["charge"]
    other = services.place({**ORDER, "amount": 5}, key="k1")
    assert other.status_code == 422
    assert "different request" in other.json()["reason"]


def test_an_order_id_is_placed_once(make) -> None:
    services = make()
    services.place(key="k1")
    second = services.place(key="k2")
    assert second.status_code == 409
    assert second.json()["reason"] == "order 'o-1' was placed already; GET /orders/o-1 tells its outcome"
    assert services.ledger("payment") == ["charge"]


def test_a_refused_step_is_compensated_and_the_audit_agrees(make) -> None:
    services = make()
    services.clients["shipping"].post("/_inspect/refuse-next")
    placed = services.place(key="k1")
    assert placed.json()["outcome"] == "compensated"
    assert services.ledger("payment") == ["charge", "refund"]
    assert services.ledger("inventory") == ["reserve", "release"]
    assert services.audit().findings() == []


def test_a_participant_that_answers_500_fails_the_order_without_a_5xx(make) -> None:
    async def broken_payment(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 500, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    services = make(payment=broken_payment)
    placed = services.place(key="k1")
    assert (placed.status_code, placed.json()["outcome"]) == (201, "failed")
    told = services.order.get("/orders/o-1").json()
    assert told["reason"] == "payment answered 500 to POST /charges, which the saga does not understand"
    assert services.audit().findings() == ["o-1: failed: an operator must act"]


@pytest.mark.parametrize(
    "body",
    [
        {**ORDER, "order_id": ""},
        {**ORDER, "order_id": "ordér-1"},  # becomes part of a header: ASCII only
        {**ORDER, "order_id": "x" * 121},
        {**ORDER, "qty": 0},
        {**ORDER, "amount": "100"},
        {k: v for k, v in ORDER.items() if k != "sku"},
        {**ORDER, "coupon": "FREE"},
        [ORDER],
    ],
)
def test_bad_orders_are_rejected_naming_the_field(make, body: Any) -> None:
    services = make()
    response = services.place(body)
    assert response.status_code == 422, response.text
    assert response.json()["status"] == "rejected"
    assert services.ledger("inventory") == []


def test_an_unknown_or_malformed_order_id_is_4xx(make) -> None:
    services = make()
    assert services.order.get("/orders/nope").status_code == 404
    assert services.order.get("/orders/nope").json()["reason"] == "no order 'nope' was placed"
    assert services.order.get("/orders/" + "x" * 121).status_code == 422


def test_a_restarted_order_service_remembers_its_orders(make, tmp_path: Path) -> None:
    store = tmp_path / "order.sqlite"
    first = make(store_path=store)
    placed = first.place(key="k1")
    second = make(store_path=store, **first.apps)  # the same participants, a new order service
    assert second.order.get("/orders/o-1").json()["outcome"] == "completed"
    again = second.place(key="k1")
    assert (again.json(), again.headers["Idempotency-Replayed"]) == (placed.json(), "true")
    assert [e["id"] for e in second.order.get("/events").json()["events"]] == ["order-1"]
    assert second.ledger("payment") == ["charge"]


def test_the_order_service_needs_every_upstream_and_real_urls() -> None:
    with pytest.raises(ValueError, match="missing: shipping, notification"):
        create_order_app({"inventory": "http://127.0.0.1:1", "payment": "http://127.0.0.1:2"})
    urls = dict.fromkeys(PARTICIPANTS, "http://127.0.0.1:1")
    with pytest.raises(ValueError, match="not a participant service: billing"):
        create_order_app({**urls, "billing": "http://127.0.0.1:3"})
    with pytest.raises(ValueError, match="payment service's URL 'ftp://x' is not an http"):
        create_order_app({**urls, "payment": "ftp://x"})


def test_the_order_service_runs_from_the_command_line_with_clear_errors() -> None:
    command = [sys.executable, "-m", "saga_verify.reference.services", "--service", "order", "--port", "0"]
    missing = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2
    assert "needs the URL of each of inventory, payment, shipping, notification" in missing.stderr
    wrong = subprocess.run(
        [*command[:-4], "--service", "payment", "--upstream", "payment=http://127.0.0.1:1"], capture_output=True, text=True, timeout=60
    )
    assert wrong.returncode == 2
    assert "--upstream is for the order service" in wrong.stderr
    malformed = subprocess.run([*command, "--upstream", "payment"], capture_output=True, text=True, timeout=60)
    assert malformed.returncode == 2
    assert "write it as SERVICE=URL" in malformed.stderr
