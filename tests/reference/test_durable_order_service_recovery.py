"""The durable order service started again while it takes up the order its predecessor died in:
the recovery holds the lock that serialises order requests for as long as the saga runs, and a
request for the order waits for it off the event loop, so that the service answers its ready
check meanwhile (the harness that restarts it waits for that before it plays the next crash)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from saga_verify._world._asgi import SyncASGITransport
from saga_verify.reference import DurableOrderSaga
from saga_verify.reference.services import create_app
from saga_verify.reference.services._order_app import ORDER_SERVICE, create_order_app

PARTICIPANTS = ("inventory", "payment", "shipping", "notification")
ORDER = {"order_id": "o-1", "sku": "sku-1", "qty": 2, "amount": 100}
#: How long anything here may take on a busy machine (waits end as soon as what they wait for happens).
PATIENCE = 60.0


class Killed(BaseException):
    """The order service's process dies here: nothing after it runs."""


class AtTheCharge(httpx.BaseTransport):
    """The payment service as the order service reaches it. ``kill``: the order service dies
    once payment applied the charge; else the charge is held until `let_go` (the recovery that
    resumes it is under way meanwhile)."""

    def __init__(self, app: Any, *, kill: bool) -> None:
        self.inner = SyncASGITransport(app)
        self.kill = kill
        self.reached = threading.Event()
        self.let_go = threading.Event()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/charges":
            if self.kill:
                self.inner.handle_request(request)
                raise Killed
            self.reached.set()
            self.let_go.wait(PATIENCE)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


@contextmanager
def served(app: Any) -> Iterator[tuple[str, uvicorn.Server]]:
    """``app`` served by uvicorn on a loopback port, on a thread of its own, as the service does."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", server
    finally:
        server.should_exit = True
        thread.join(PATIENCE)
        sock.close()


def wait_until(what: Any) -> None:
    deadline = time.monotonic() + PATIENCE
    while not what():
        assert time.monotonic() < deadline, "it did not happen in time"
        time.sleep(0.01)


#: What a request for the order (or for the outbox that tells its end) answers once it was taken up.
ASKED = {
    "/orders/o-1": lambda reply: reply.json()["outcome"],
    "/events": lambda reply: [e["type"] for e in reply.json()["events"]],
}


@pytest.mark.parametrize(("path", "answered"), [("/orders/o-1", "completed"), ("/events", ["order.completed"])])
def test_while_a_restarted_service_takes_up_an_order_a_request_for_it_waits_and_the_ready_check_answers(
    tmp_path: Path, path: str, answered: Any
) -> None:
    apps = {name: create_app(name, inspect=True) for name in PARTICIPANTS}

    def order_app(payment: AtTheCharge) -> Any:
        upstreams = {name: payment if name == "payment" else SyncASGITransport(app) for name, app in apps.items()}
        return create_order_app(upstreams, saga_class=DurableOrderSaga, store_path=tmp_path / "order.sqlite", saga_log=tmp_path / "log.sqlite")

    dead = order_app(AtTheCharge(apps["payment"], kill=True))
    assert dead.state.recovered.wait(PATIENCE)
    with pytest.raises(Killed):
        dead.state.served.call(ORDER_SERVICE.operations[0], ORDER, "k1")
    dead.state.close()

    payment = AtTheCharge(apps["payment"], kill=False)
    again = order_app(payment)  # started again on the same files: it takes the order up at once
    assert payment.reached.wait(PATIENCE)
    with served(again) as (url, server):
        asked: list[httpx.Response] = []
        asking = threading.Thread(target=lambda: asked.append(httpx.get(f"{url}{path}", timeout=PATIENCE)))
        asking.start()
        wait_until(lambda: len(server.server_state.tasks) == 1)  # the request is being served
        try:
            health = httpx.get(f"{url}/health", timeout=10.0)
            # Answered while the recovery still holds the order, and the request for it waits.
            assert (health.status_code, again.state.recovered.is_set(), asked) == (200, False, [])
        finally:
            payment.let_go.set()
            asking.join(PATIENCE)
        assert [(r.status_code, ASKED[path](r)) for r in asked] == [(200, answered)]
    assert again.state.recovered.is_set()
    again.state.close()
