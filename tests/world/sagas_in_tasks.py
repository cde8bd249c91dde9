"""Sagas whose steps run in an asyncio task that resolves a future the saga awaits, as several saga
libraries run them, and sagas that get stuck on what the harness does not own. Imported by the
termination tests, in this process and in fresh interpreters (a search that never ended there
fails a test instead of hanging it)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from typing import Any

import httpx

from saga_verify import HttpParticipant, Ledger, Saga, Step

ORDER = {"order_id": "o-1", "amount": 100}


class Payment:
    """Charges and refunds by idempotency key (a refund that comes first leaves a tombstone, so
    the charge it overtook is refused); ``ping`` is a cheap call that takes no effect."""

    def __init__(self) -> None:
        self.ledger = Ledger()
        self.charges: dict[str, str] = {}
        self.refunded: set[str] = set()

    def charge(self, amount: int, idempotency_key: str) -> dict[str, Any]:
        if idempotency_key in self.refunded:
            return {"status": "refused"}
        if idempotency_key not in self.charges:
            self.charges[idempotency_key] = f"ch-{len(self.charges) + 1}"
            self.ledger.record("charge", amount, self.charges[idempotency_key])
        return {"status": "ok", "charge_id": self.charges[idempotency_key]}

    def refund(self, charge_key: str, amount: int, idempotency_key: str) -> dict[str, Any]:
        if charge_key not in self.refunded:
            self.refunded.add(charge_key)
            if charge_key in self.charges:
                self.ledger.record("refund", amount, self.charges[charge_key])
        return {"status": "ok"}

    def ping(self) -> str:
        return "pong"


STEPS = [Step("payment", "charge", "refund"), Step("payment", "ping", depends_on=())]


def _saga(name: str, run: Any, **options: Any) -> Saga:
    return Saga(name, steps=STEPS, participants=lambda: {"payment": Payment()}, run=run, input=ORDER, **options)


def in_a_task(steps: Any) -> Any:
    """The shape these libraries share: the steps run in a task, which resolves a future that
    the saga awaits (and nothing else resolves it)."""

    async def run(services: Any, order: Any) -> Any:
        outcome: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        async def worker() -> None:
            try:
                outcome.set_result(await steps(services, order))
            except Exception as exc:  # what the library does with a failing step
                outcome.set_exception(exc)

        task = asyncio.create_task(worker())
        try:
            return await outcome
        finally:
            task.cancel()

    return run


async def _retry_forever(services: Any, order: Any) -> str:
    while True:
        try:
            services.payment.charge(amount=order["amount"], idempotency_key="o-1:charge")
            return "completed"
        except (ConnectionError, TimeoutError):
            await asyncio.sleep(0.5)


#: Retries a failing charge forever (the classic bug): it never ends under an outage.
retry_forever_in_task = _saga("retry_forever_in_task", in_a_task(_retry_forever))


async def _careful(services: Any, order: Any) -> str:
    # Makes a good many calls, so that Hypothesis runs out of choices for some examples.
    for _ in range(12):
        try:
            services.payment.ping()
        except (ConnectionError, TimeoutError):
            await asyncio.sleep(0.1)
    for attempt in range(3):
        try:
            services.payment.charge(amount=order["amount"], idempotency_key="o-1:charge")
            return "completed"
        except ConnectionError:
            await asyncio.sleep(0.2 * (attempt + 1))
        except TimeoutError:
            break  # the outcome is unknown: undo it, whether it happened or not
    for attempt in range(3):
        try:
            services.payment.refund(charge_key="o-1:charge", amount=order["amount"], idempotency_key="o-1:refund")
            return "compensated"
        except (ConnectionError, TimeoutError):
            await asyncio.sleep(0.2 * (attempt + 1))
    return "failed"


#: Correct: bounded retries, an unknown outcome compensated. It holds.
careful_in_task = _saga("careful_in_task", in_a_task(_careful))


# -- the same sagas over an async HTTP client (what async sagas could call before plain
# participants were allowed in them) --------------------------------------------------------------
def _over_http() -> dict[str, object]:
    payment = Payment()

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/ping":
            return httpx.Response(200, json=payment.ping())
        body = json.loads(request.content)
        key = request.headers["Idempotency-Key"]
        call = payment.charge if request.url.path == "/charges" else payment.refund
        return httpx.Response(200, json=call(**body, idempotency_key=key))

    routes = {"charge": "POST /charges", "refund": "POST /refunds", "ping": "GET /ping"}
    return {"payment": HttpParticipant(httpx.MockTransport(handle), routes, asynchronous=True, ledger=payment.ledger)}


async def _retry_forever_over_http(services: Any, order: Any) -> str:
    while True:
        try:
            await services.payment.post("/charges", json={"amount": order["amount"]}, headers={"Idempotency-Key": "o-1:charge"})
            return "completed"
        except httpx.TransportError:
            await asyncio.sleep(0.5)


retry_forever_over_http_in_task = Saga(
    "retry_forever_over_http_in_task",
    steps=STEPS,
    participants=_over_http,
    run=in_a_task(_retry_forever_over_http),
    input=ORDER,
)


async def _forgotten(services: Any, order: Any) -> str:
    services.payment.charge(amount=order["amount"], idempotency_key="o-1:charge")
    never: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    return await never  # nothing will ever resolve it


#: Awaits a future nothing resolves: every task waits and nothing is scheduled.
waits_forever = Saga(
    "waits_forever", steps=STEPS, participants=lambda: {"payment": Payment()}, run=_forgotten, input=ORDER
)


async def _stubborn(services: Any, order: Any) -> str:
    while True:
        try:
            services.payment.charge(amount=order["amount"], idempotency_key="o-1:charge")
            return "completed"
        except BaseException:  # swallows even the harness's stop
            await asyncio.sleep(1.0)


#: Catches BaseException around a call and retries forever: raising cannot stop it.
swallows_everything = _saga("swallows_everything", in_a_task(_stubborn))


def _busy(services: Any, order: Any) -> str:
    services.payment.charge(amount=order["amount"], idempotency_key="o-1:charge")
    spins = 0
    while True:  # a busy loop the harness does not own
        spins += 1


def _blocked(services: Any, order: Any) -> str:
    services.payment.charge(amount=order["amount"], idempotency_key="o-1:charge")
    threading.Event().wait()  # a lock nobody will release
    return "completed"


async def _reads_a_socket(services: Any, order: Any) -> str:
    services.payment.charge(amount=order["amount"], idempotency_key="o-1:charge")
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    await asyncio.get_running_loop().sock_recv(ours, 1)  # real I/O that never comes
    theirs.close()
    return "completed"


#: Stuck on what the harness does not own, each with a short real-time limit.
busy_loop = _saga("busy_loop", _busy, max_real_seconds=0.3)
blocked_on_a_lock = _saga("blocked_on_a_lock", _blocked, max_real_seconds=0.3)
waits_for_real_io = _saga("waits_for_real_io", _reads_a_socket, max_real_seconds=0.3)


async def _careful_over_http(services: Any, order: Any) -> str:
    charge = {"json": {"amount": order["amount"]}, "headers": {"Idempotency-Key": "o-1:charge"}}
    refund = {"json": {"charge_key": "o-1:charge", "amount": order["amount"]}, "headers": {"Idempotency-Key": "o-1:refund"}}
    for _ in range(12):
        try:
            await services.payment.get("/ping")
        except httpx.TransportError:
            await asyncio.sleep(0.1)
    for attempt in range(3):
        try:
            await services.payment.post("/charges", **charge)
            return "completed"
        except httpx.ConnectError:
            await asyncio.sleep(0.2 * (attempt + 1))
        except httpx.TransportError:
            break  # the outcome is unknown: undo it, whether it happened or not
    for attempt in range(3):
        try:
            await services.payment.post("/refunds", **refund)
            return "compensated"
        except httpx.TransportError:
            await asyncio.sleep(0.2 * (attempt + 1))
    return "failed"


careful_over_http_in_task = Saga(
    "careful_over_http_in_task", steps=STEPS, participants=_over_http, run=in_a_task(_careful_over_http), input=ORDER
)
