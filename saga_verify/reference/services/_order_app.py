"""The order service: ``POST /orders`` runs the orchestrated order saga against the four
participant services over HTTP and answers its outcome; ``GET /orders/{order_id}`` tells it again.

It is served like the participants (`build_app`): the same ``Idempotency-Key`` rules (same key
and body: the stored reply, marked as a replay; same key, other body: 422), the same validation,
the same outbox (``order.completed``, ``order.compensated`` or ``order.failed`` per order) and
store. Its "participant" is an `OrderBook`: the orders placed so far, the dedupe store, a
ledger of outcomes, and the HTTP clients of the participant services, which are configuration
and not state (`OrderBook.transient`).

An order id is placed once: a second order with the same id and another key (or none) is
refused with 409, and ``GET /orders/{order_id}`` answers what happened to the first. A
participant answering a status the saga does not understand (a 500, say) stops the saga; the
order is then recorded as ``failed`` (an operator must look), with the reason, and still
answered with 201: the order exists, its outcome is the bad news.

With a durable saga (`DurableOrderSaga` or a class derived from it) the service keeps the saga's
write-ahead log in a `SqliteSagaLog` of its own (``saga_log``), and an order is *accepted* (saved
in the store) before its saga writes anything. A service killed mid-saga and started again takes
up, before it serves any order request, every accepted order it had not answered: the saga goes on
from where its log says (forward or compensating), the outcome is recorded and published as if
the order had just ended, and a retry of the place request with its key gets that outcome.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal

import httpx
from fastapi import FastAPI, Path
from pydantic import Field

from .._durable import DurableOrderSaga
from .._orchestrated import OrderSaga
from .._order_client import HttpServices
from .._participants import IdempotentReceiver, Reply, ok, refused
from .._saga_log import SagaLog, SqliteSagaLog
from ._app import _JSON, Operation, Rejected, ReplyModel, RequestModel, Service, _ledger_rows, _Served, build_app

__all__ = ["ORDER_SERVICE", "OrderBook", "create_order_app"]

#: What an order id may hold: it becomes part of the Idempotency-Key of every call its saga makes.
ORDER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"

#: The participant services the order service calls.
UPSTREAMS = ("inventory", "payment", "shipping", "notification")


class PlaceOrderRequest(RequestModel):
    # The saga derives its Idempotency-Keys from the order id, and a header holds ASCII only.
    order_id: str = Field(
        min_length=1,
        max_length=120,
        pattern=ORDER_ID_PATTERN,
        description="The order's id, chosen by the client (letters, digits and . _ : -): an order id is placed once.",
    )
    sku: str = Field(description="The stock-keeping unit ordered.")
    qty: int = Field(ge=1, description="How many units.")
    amount: int = Field(ge=1, description="The amount to charge in minor units (cents).")


Outcome = Literal["completed", "compensated", "failed"]
_OUTCOME_DOC = (
    "completed: reserved, charged and shipped; compensated: a step failed and every step that took "
    "effect was undone; failed: the saga could not finish or undo everything, an operator must act."
)


class OrderPlaced(ReplyModel):
    status: Literal["ok"]
    order_id: str
    outcome: Outcome = Field(description=_OUTCOME_DOC)


class Order(ReplyModel):
    order_id: str
    sku: str
    qty: int
    amount: int
    outcome: Outcome = Field(description=_OUTCOME_DOC)
    reason: str | None = Field(description="Why the saga failed, when a participant answered something it does not understand; else null.")


class NotFound(ReplyModel):
    status: Literal["not_found"]
    reason: str


class _WallClock:
    """The saga's clock in a real service: its back-off really waits."""

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class _Upstreams:
    """What `HttpServices` reads: a client per participant service, and a clock."""

    def __init__(self, clients: Mapping[str, httpx.Client], store: SagaLog | None = None) -> None:
        self._clients = dict(clients)
        self.clock = _WallClock()
        #: A durable saga's log (`HttpServices` hands it on as ``services.store``).
        self.store = store

    def __getitem__(self, name: str) -> httpx.Client:
        return self._clients[name]

    def close(self) -> None:
        for client in self._clients.values():
            client.close()


class OrderBook(IdempotentReceiver):
    """The order service's state: the orders placed and how their sagas ended."""

    #: Attributes that are configuration, not state: the store leaves them out.
    transient: ClassVar[tuple[str, ...]] = ("upstreams", "saga_class", "checkpoint")

    def __init__(self, upstreams: _Upstreams | None = None, saga_class: type[OrderSaga] = OrderSaga) -> None:
        super().__init__()
        self.upstreams = upstreams
        self.saga_class = saga_class
        self.orders: dict[str, dict[str, Any]] = {}
        #: A durable saga's orders that were accepted and not yet answered: order id -> the order
        #: and the place request's key. Saved before the saga starts, so a restart finds them.
        self.accepted: dict[str, dict[str, Any]] = {}
        #: Saves the state now, in the middle of a request (the app sets it; None: in memory only).
        self.checkpoint: Callable[[], None] | None = None

    @property
    def durable(self) -> bool:
        return issubclass(self.saga_class, DurableOrderSaga)

    def place(self, *, order_id: str, sku: str, qty: int, amount: int, idempotency_key: str | None = None) -> Reply:
        payload = ("place", order_id, sku, qty, amount)
        stored = self._seen(idempotency_key, payload)
        if stored is not None:
            return stored
        if order_id in self.orders or order_id in self.accepted:
            reply = refused(f"order {order_id!r} was placed already; GET /orders/{order_id} tells its outcome")
            return self._remember(idempotency_key, payload, reply)
        order = {"order_id": order_id, "sku": sku, "qty": qty, "amount": amount}
        if self.durable:
            # Accepted, and saved so, before the saga logs anything: a restart takes it up.
            self.accepted[order_id] = {"order": order, "key": idempotency_key}
            if self.checkpoint is not None:
                self.checkpoint()
        return self._finish(order, idempotency_key, *self._run(order))

    def _finish(self, order: dict[str, Any], key: str | None, outcome: str, reason: str | None) -> Reply:
        """Record how an order ended, and answer it (under ``key``, for a retry of its request)."""
        order_id = order["order_id"]
        self.accepted.pop(order_id, None)
        self.orders[order_id] = {**order, "outcome": outcome, "reason": reason}
        self.ledger.record(outcome, order["amount"], order_id, correlation_id=order_id)
        payload = ("place", order_id, order["sku"], order["qty"], order["amount"])
        return self._remember(key, payload, ok(order_id=order_id, outcome=outcome))

    def unanswered(self) -> list[str]:
        """The accepted orders a service started again takes up, oldest first: all of them, but
        those its log holds unfinished that the saga's own recovery would not resume."""
        if not self.accepted or self.upstreams is None or self.upstreams.store is None:
            return []
        log = self.upstreams.store
        left = set(log.unfinished()) - set(self.saga_class.resumable(log))  # type: ignore[attr-defined]  # durable
        return [order_id for order_id in self.accepted if order_id not in left]

    def take_up(self, order_id: str) -> Reply:
        """Finish an accepted order after a restart: its saga goes on from its log."""
        pending = self.accepted[order_id]
        order = dict(pending["order"])
        # Its predecessor, the only process of this service, is dead: its leases are over.
        return self._finish(order, pending["key"], *self._run(order, holder_dead=True))

    def _run(self, order: dict[str, Any], holder_dead: bool = False) -> tuple[str, str | None]:
        if self.upstreams is None:
            raise RuntimeError("an OrderBook without upstreams cannot place orders")
        try:
            services = HttpServices(self.upstreams)
            if holder_dead:
                outcome = self.saga_class(services, order, owner="restarted", holder_dead=True).run()  # type: ignore[call-arg]  # durable
            else:
                outcome = self.saga_class(services, order).run()
        except httpx.HTTPStatusError as error:
            request = error.request
            service = request.url.host
            return "failed", (
                f"{service} answered {error.response.status_code} to {request.method} {request.url.path}, "
                "which the saga does not understand"
            )
        return outcome, None


ORDER_SERVICE = Service(
    "order",
    OrderBook,
    (
        Operation(
            "place", "/orders", PlaceOrderRequest, OrderPlaced, 201, "Place an order (runs its saga)",
            ok="The order was placed and its saga ran to the outcome given.",
            refused="Refused: an order with this id was placed already (by another request). Nothing was done.",
            blocking=True,
            links={
                "Order": {
                    "operationId": "order",
                    "description": "Ask again how the order ended.",
                    "parameters": {"order_id": "$response.body#/order_id"},
                }
            },
        ),
    ),
    "Places orders: reserves stock, charges, ships and notifies through the participant services, "
    "and undoes the steps taken when one fails.",
)


def create_order_app(
    upstreams: Mapping[str, str | httpx.BaseTransport],
    *,
    store_path: str | os.PathLike[str] | None = None,
    inspect: bool = False,
    saga_class: type[OrderSaga] = OrderSaga,
    timeout: float = 5.0,
    store_sync: str = "full",
    saga_log: str | os.PathLike[str] | None = None,
) -> FastAPI:
    """The order service's app. ``upstreams`` maps each participant service (inventory,
    payment, shipping, notification) to its base URL, or to an httpx transport that reaches it
    (an ASGI app in this process, say). ``saga_class`` is the saga it runs (the correct one by
    default; a broken variant to serve that). ``app.state.close()`` closes the clients of the
    participant services.

    A durable ``saga_class`` keeps its log in the SQLite file ``saga_log`` (None: in memory,
    which a restart loses); with ``store_path`` too, the app first takes up the orders a killed
    service had accepted and not answered (see the module), on a thread of its own: requests
    for orders wait for it, the ready check does not. ``app.state.recovered`` is set once it is
    done. A ``saga_log`` for a saga that keeps none is refused."""
    missing = [name for name in UPSTREAMS if name not in upstreams]
    unknown = [name for name in upstreams if name not in UPSTREAMS]
    if missing or unknown:
        raise ValueError(
            "the order service needs the URL of each of " + ", ".join(UPSTREAMS)
            + (f"; missing: {', '.join(missing)}" if missing else "")
            + (f"; not a participant service: {', '.join(unknown)}" if unknown else "")
        )
    durable = issubclass(saga_class, DurableOrderSaga)
    if saga_log is not None and not durable:
        raise ValueError(f"a saga log is for a durable saga; {saga_class.__name__} keeps none")
    # A corrupt or foreign log is refused here (RecoveryError names it): never a fresh start.
    log = SqliteSagaLog(os.fspath(saga_log) if saga_log is not None else ":memory:") if durable else None
    clients: dict[str, httpx.Client] = {}
    for name in UPSTREAMS:
        target = upstreams[name]
        if isinstance(target, str):
            url = httpx.URL(target)
            if url.scheme not in ("http", "https") or not url.host:
                raise ValueError(f"the {name} service's URL {target!r} is not an http(s) URL")
            clients[name] = httpx.Client(base_url=target, timeout=timeout)
        else:
            clients[name] = httpx.Client(base_url=f"http://{name}", transport=target, timeout=timeout)
    book = OrderBook(_Upstreams(clients, log), saga_class)
    app = build_app(ORDER_SERVICE, participant=book, store_path=store_path, inspect=inspect, store_sync=store_sync)
    served = app.state.served
    book.checkpoint = served.commit

    def close() -> None:
        """Closes the clients of the participant services (the app keeps them for its lifetime)."""
        assert book.upstreams is not None
        book.upstreams.close()
        if log is not None:
            log.close()

    app.state.close = close
    app.state.recovered = threading.Event()
    if durable:
        _take_up_in_background(served, app.state.recovered)
    else:
        app.state.recovered.set()

    @app.get(
        "/orders/{order_id}",
        operation_id="order",
        summary="Tell an order's outcome",
        response_description="The order and how its saga ended.",
        responses={
            404: {"model": NotFound, "description": "No order with this id was placed."},
            422: {"model": Rejected, "description": "Rejected: not an order id (1 to 120 letters, digits and . _ : -)."},
        },
    )
    async def order(order_id: str = _ORDER_ID) -> Order:
        # Waits while a saga or the recovery holds the lock, off the event loop (see `_Served.read`).
        found = await served.read(lambda: served.participant.orders.get(order_id))
        if found is None:
            return _JSON({"status": "not_found", "reason": f"no order {order_id!r} was placed"}, status_code=404)  # type: ignore[return-value]
        return _JSON(found)  # type: ignore[return-value]

    return app


def _take_up_in_background(served: _Served, done: threading.Event) -> None:
    """Take up the orders a killed service left unanswered, holding the lock that serialises
    requests from now until they are done: no order request runs beside a recovery."""
    served.lock.acquire()

    def take_up() -> None:
        try:
            book = served.participant
            assert isinstance(book, OrderBook)
            for order_id in book.unanswered():
                rows = _ledger_rows(book)
                before = len(rows)
                key = book.accepted[order_id]["key"]
                book.take_up(order_id)
                served.publish(rows[before:], {"order_id": order_id}, key)
                served.commit()
        except BaseException as error:  # a thread has no one to raise to: say it, and serve on
            print(f"saga-verify order service: taking up unanswered orders failed: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
        finally:
            served.lock.release()
            done.set()

    threading.Thread(target=take_up, name="order-recovery", daemon=True).start()


_ORDER_ID: Any = Path(description="The order's id.", min_length=1, max_length=120, pattern=ORDER_ID_PATTERN)
