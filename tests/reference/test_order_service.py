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
from saga_verify.errors import RecoveryError
from saga_verify.reference import DurableOrderSaga, OrderSaga, SqliteSagaLog
from saga_verify.reference._audit import Audit
from saga_verify.reference.services import create_app
from saga_verify.reference.services._order_app import ORDER_SERVICE, create_order_app

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


# -- the durable saga -------------------------------------------------------------------------
class Killed(BaseException):
    """The order service's process dies here: nothing after it runs."""


class DiesAtCharge(httpx.BaseTransport):
    """The payment service as the order service reaches it, but the order service dies at the
    charge: before sending it, or once payment applied it and before the reply is read."""

    def __init__(self, app: Any, after: bool) -> None:
        self.inner = SyncASGITransport(app)
        self.after = after

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/charges":
            if self.after:
                self.inner.handle_request(request)
            raise Killed
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def _durable_app(apps: dict[str, Any], folder: Path, **transports: httpx.BaseTransport) -> Any:
    upstreams = {name: transports.get(name) or SyncASGITransport(app) for name, app in apps.items()}
    app = create_order_app(upstreams, saga_class=DurableOrderSaga, store_path=folder / "order.sqlite", saga_log=folder / "log.sqlite")
    assert app.state.recovered.wait(60)
    return app


@pytest.mark.parametrize("after", [False, True], ids=["before-the-charge", "after-the-charge"])
def test_a_durable_order_service_started_again_finishes_the_order_its_predecessor_died_in(tmp_path: Path, after: bool) -> None:
    apps = {name: create_app(name, inspect=True) for name in PARTICIPANTS}
    dead = _durable_app(apps, tmp_path, payment=DiesAtCharge(apps["payment"], after))
    with pytest.raises(Killed):
        dead.state.served.call(ORDER_SERVICE.operations[0], ORDER, "k1")
    dead.state.close()
    assert dead.state.served.participant.accepted == {"o-1": {"order": ORDER, "key": "k1"}}

    again = _durable_app(apps, tmp_path)  # the service started again, on the same files
    order = httpx.Client(transport=SyncASGITransport(again), base_url="http://order")
    assert order.get("/orders/o-1").json()["outcome"] == "completed"
    retried = order.post("/orders", json=ORDER, headers={KEY: "k1"})
    assert (retried.status_code, retried.json()["outcome"], retried.headers["Idempotency-Replayed"]) == (201, "completed", "true")
    charges = [row["action"] for row in apps["payment"].state.served.ledger()]
    assert charges == ["charge"]
    audit = Audit()
    for app in [again, *apps.values()]:
        for event in app.state.served.events(0, 1000)["events"]:
            audit.handle(event)
    assert audit.findings() == []
    assert [e["type"] for e in again.state.served.events(0, 1000)["events"]] == ["order.completed"]
    order.close()
    again.state.close()


def test_a_durable_order_service_keeps_its_saga_log_and_refuses_one_it_cannot_read(tmp_path: Path) -> None:
    apps = {name: create_app(name, inspect=True) for name in PARTICIPANTS}
    app = _durable_app(apps, tmp_path)
    order = httpx.Client(transport=SyncASGITransport(app), base_url="http://order")
    assert order.post("/orders", json=ORDER, headers={KEY: "k1"}).json()["outcome"] == "completed"
    order.close()
    app.state.close()
    log = SqliteSagaLog(str(tmp_path / "log.sqlite"))
    assert [e["type"] for e in log.entries("o-1")][-1] == "ended"
    log.close()
    upstreams = {name: SyncASGITransport(a) for name, a in apps.items()}
    with pytest.raises(ValueError, match="a saga log is for a durable saga; OrderSaga keeps none"):
        create_order_app(upstreams, saga_log=tmp_path / "log.sqlite")
    (tmp_path / "corrupt.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(RecoveryError, match=r"corrupt\.sqlite.* cannot be read"):
        create_order_app(upstreams, saga_class=DurableOrderSaga, saga_log=tmp_path / "corrupt.sqlite")
    for transport in upstreams.values():
        transport.close()


def test_the_saga_log_option_is_the_order_services_and_a_bad_log_is_named() -> None:
    command = [sys.executable, "-m", "saga_verify.reference.services", "--port", "0"]
    wrong = subprocess.run([*command, "--service", "payment", "--saga-log", "x.sqlite"], capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 2
    assert "--saga-log is for the order service" in wrong.stderr
