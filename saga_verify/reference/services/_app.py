"""The reference participants as FastAPI apps: one app per service, one POST route per operation.

Each route validates its JSON body (strict types, no extra fields) and the optional
``Idempotency-Key`` header, calls the participant's method with the body's fields and
``idempotency_key=``, and answers with the participant's reply dict as JSON; the reply's
``status`` picks the HTTP status. The routes, models and statuses here generate the OpenAPI
document that must equal the checked-in contract in ``contracts/openapi/<service>.yaml``
(``tests/reference/test_openapi_contracts.py`` holds them together).
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, TypeVar

from fastapi import FastAPI, Header, HTTPException, Query, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from saga_verify import Ledger, LedgerRow
from saga_verify.systems import EffectsMiddleware

from .._participants import Inventory, Notification, Payment, Shipping
from ._events import EventPage, events_for_rows
from ._store import ParticipantState, StoreError

__all__ = ["API_VERSION", "SERVICES", "Operation", "Service", "build_app", "create_app", "serve_participant"]

#: The version of the HTTP API (the contracts' ``info.version``), not of the package.
API_VERSION = "1.0.0"

IDEMPOTENCY_KEY = "Idempotency-Key"
REPLAYED = "Idempotency-Replayed"
MAX_KEY_LENGTH = 200


def _untitled(schema: dict[str, Any], cls: type[Any]) -> None:
    """Drop pydantic's generated titles: they repeat the names and only add noise to the contract."""
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)


class RequestModel(BaseModel):
    """A request body: strict JSON types (no "2" for 2, no 2.0 for 2, no true for 1), no extra fields."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=_untitled)


class ReplyModel(BaseModel):
    """A reply body. Open: a client must accept fields it does not know."""

    model_config = ConfigDict(json_schema_extra=_untitled)


_ORDER_ID = Field(description="The order (saga instance) the request belongs to.")


class ReserveRequest(RequestModel):
    order_id: str = _ORDER_ID
    sku: str = Field(description="The stock-keeping unit to reserve.")
    qty: int = Field(ge=1, description="How many units.")


class ReleaseRequest(RequestModel):
    reserve_key: str = Field(description="The Idempotency-Key of the reservation to release.")


class ChargeRequest(RequestModel):
    order_id: str = _ORDER_ID
    amount: int = Field(ge=1, description="The amount in minor units (cents).")


class RefundRequest(RequestModel):
    charge_key: str = Field(description="The Idempotency-Key of the charge to refund.")


class CreateShipmentRequest(RequestModel):
    order_id: str = _ORDER_ID
    # Documented only (the participant itself rejects an empty id, with its own reason): the
    # contract must not promise that an empty reservation id is accepted.
    reservation_id: str = Field(
        description="The reservation id inventory returned for the order's stock.", json_schema_extra={"minLength": 1}
    )


class CancelShipmentRequest(RequestModel):
    shipment_key: str = Field(description="The Idempotency-Key of the shipment to cancel.")


class SendNotificationRequest(RequestModel):
    order_id: str = _ORDER_ID
    message: str = Field(description="What to tell the customer.")


class Reserved(ReplyModel):
    status: Literal["ok"]
    reservation_id: str


class Released(ReplyModel):
    status: Literal["ok"]
    released: str | None = Field(description="The released reservation; null if none was known (a tombstone now refuses it).")


class Charged(ReplyModel):
    status: Literal["ok"]
    charge_id: str


class Refunded(ReplyModel):
    status: Literal["ok"]
    refunded: str | None = Field(description="The refunded charge; null if none was known (a tombstone now refuses it).")


class ShipmentCreated(ReplyModel):
    status: Literal["ok"]
    shipment_id: str


class ShipmentCancelled(ReplyModel):
    status: Literal["ok"]
    cancelled: str | None = Field(description="The cancelled shipment; null if none was known (a tombstone now refuses it).")


class NotificationSent(ReplyModel):
    status: Literal["ok"]
    message_id: str


class Refused(ReplyModel):
    status: Literal["refused"]
    reason: str = Field(description="Why, e.g. out_of_stock, card_declined, address_undeliverable, or cancelled: ...")


class Problem(ReplyModel):
    loc: list[str | int] = Field(description="Where: body or header, then the field.")
    msg: str
    type: str


class Rejected(ReplyModel):
    status: Literal["rejected"]
    reason: str
    detail: list[Problem] = Field(default_factory=list, description="For an invalid request: each problem found.")


class Health(ReplyModel):
    status: Literal["ok"]
    service: str


@dataclass(frozen=True)
class Operation:
    """One operation of a participant, served as ``POST path``."""

    name: str
    """The participant's method (and the contract's operationId)."""
    path: str
    request: type[RequestModel]
    reply: type[ReplyModel]
    """The body of an ``ok`` reply."""
    ok_status: int
    summary: str
    ok: str
    """What an ok reply means (the contract's description of ``ok_status``)."""
    refused: str
    """When it is refused."""
    refused_status: int = 409
    blocking: bool = False
    links: Mapping[str, Any] | None = None
    """OpenAPI links of the ok reply, when not the compensation links (`_COMPENSATION_LINKS`)."""
    """The operation waits on other services (the order service's saga): it is served from a
    worker thread, so the event loop goes on serving and an in-process upstream can run its own."""

    def status_for(self, reply: object) -> int:
        status = reply.get("status") if isinstance(reply, dict) else None
        if status == "ok":
            return self.ok_status
        if status == "refused":
            return self.refused_status
        if status == "rejected":
            return 422
        raise TypeError(f"{self.name} answered {reply!r}: not a reply dict whose status is ok, refused or rejected")


@dataclass(frozen=True)
class Service:
    """A reference service: its participant and the operations it serves."""

    name: str
    participant: Callable[[], object]
    """Builds the correct (idempotent) participant."""
    operations: tuple[Operation, ...]
    description: str

    @property
    def routes(self) -> dict[str, str]:
        """Operation -> ``"POST /path"``, as ``saga_verify.HttpParticipant(routes=...)`` takes them."""
        return {op.name: f"POST {op.path}" for op in self.operations}

    @property
    def title(self) -> str:
        return f"saga-verify reference {self.name} service"


_COMPENSATION_REFUSED = "Refused for a business reason; the reference participant never refuses a compensation."

SERVICES: Mapping[str, Service] = MappingProxyType(
    {
        "inventory": Service(
            "inventory",
            Inventory,
            (
                Operation(
                    "reserve", "/reservations", ReserveRequest, Reserved, 201, "Reserve stock for an order",
                    ok="Reserved.",
                    refused="Refused: out of stock, or released before it arrived (a tombstone). Nothing was reserved.",
                ),
                Operation(
                    "release", "/releases", ReleaseRequest, Released, 200, "Release a reservation (compensation)",
                    ok="Released, or already released; a reservation not yet seen is refused when it arrives.",
                    refused=_COMPENSATION_REFUSED,
                ),
            ),
            "Reserves stock for orders; releasing a reservation puts the stock back.",
        ),
        "payment": Service(
            "payment",
            Payment,
            (
                Operation(
                    "charge", "/charges", ChargeRequest, Charged, 201, "Charge the customer",
                    ok="Charged.",
                    refused="Refused: card declined, or refunded before it arrived (a tombstone). Nothing was charged.",
                    refused_status=402,
                ),
                Operation(
                    "refund", "/refunds", RefundRequest, Refunded, 200, "Refund a charge (compensation)",
                    ok="Refunded, or already refunded; a charge not yet seen is refused when it arrives.",
                    refused=_COMPENSATION_REFUSED,
                ),
            ),
            "Charges customers; a refund gives the money back.",
        ),
        "shipping": Service(
            "shipping",
            Shipping,
            (
                Operation(
                    "create", "/shipments", CreateShipmentRequest, ShipmentCreated, 201, "Create a shipment",
                    ok="The shipment was created.",
                    refused="Refused: address undeliverable, or cancelled before it arrived (a tombstone). Nothing was shipped.",
                ),
                Operation(
                    "cancel", "/cancellations", CancelShipmentRequest, ShipmentCancelled, 200,
                    "Cancel a shipment (compensation)",
                    ok="Cancelled, or already cancelled; a shipment not yet seen is refused when it arrives.",
                    refused=_COMPENSATION_REFUSED,
                ),
            ),
            "Ships orders (a shipment needs the reservation id of its stock); a cancellation calls it off.",
        ),
        "notification": Service(
            "notification",
            Notification,
            (
                Operation(
                    "send", "/notifications", SendNotificationRequest, NotificationSent, 201, "Notify the customer",
                    ok="The message was sent. Nothing can take it back.",
                    refused="Refused for a business reason; the reference participant never refuses a message.",
                ),
            ),
            "Tells customers about their orders; a message cannot be taken back.",
        ),
    }
)

_KEY_DOC = (
    "A stable key for this request. A repeat with the same key and the same body gets the stored "
    "reply and has no further effect; the same key with another body is rejected (422). "
    "Requests without a key are not deduplicated."
)
_REJECTED_DOC = (
    "Rejected: the body or the Idempotency-Key header is invalid, the key was used for a different "
    "request, or the participant rejects the request as malformed. Nothing changed."
)
_REPLAYED_HEADER = {
    REPLAYED: {
        "description": "Present, with the value true, when this is the stored reply of an earlier request "
        "with the same Idempotency-Key and body.",
        "schema": {"type": "string", "enum": ["true"]},
    }
}

#: OpenAPI links from a forward operation's ok reply to its compensation, whose body names the
#: forward request by the Idempotency-Key it was sent with: (service, operation) -> (link name,
#: compensation, body field). They tell a consumer how to undo a step, and they let Schemathesis'
#: stateful run chain the two (reserve -> release, charge -> refund, create -> cancel).
_COMPENSATION_LINKS: Mapping[tuple[str, str], tuple[str, str, str]] = MappingProxyType(
    {
        ("inventory", "reserve"): ("Release", "release", "reserve_key"),
        ("payment", "charge"): ("Refund", "refund", "charge_key"),
        ("shipping", "create"): ("Cancel", "cancel", "shipment_key"),
    }
)


def _links(service: Service, op: Operation) -> dict[str, Any]:
    """The ``links`` of ``op``'s ok reply (none when the service does not serve the compensation)."""
    if op.links is not None:
        return {"links": dict(op.links)}
    link = _COMPENSATION_LINKS.get((service.name, op.name))
    if link is None or not any(other.name == link[1] for other in service.operations):
        return {}
    name, compensation, field = link
    return {
        "links": {
            name: {
                "operationId": compensation,
                "description": f"Undo it: {compensation} names this request by its {IDEMPOTENCY_KEY}.",
                "requestBody": {field: f"$request.header.{IDEMPOTENCY_KEY}"},
            }
        }
    }


# Annotated ``str`` with a None default on purpose: FastAPI then documents the header as an
# optional string, where ``str | None`` would document a header that may be JSON null.
_KEY_HEADER: Any = Header(None, alias=IDEMPOTENCY_KEY, min_length=1, max_length=MAX_KEY_LENGTH, description=_KEY_DOC)


_AFTER: Any = Query(0, ge=0, description="Answer the events after this position (0: from the first).")
_LIMIT: Any = Query(100, ge=1, le=1000, description="At most this many events.")


class _JSON(JSONResponse):
    """JSON with every non-ASCII character escaped, so no string a client sent (a lone surrogate
    in an echoed field name, say) can make encoding the reply fail."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def _stored_reply(participant: object, key: str | None) -> object | None:
    """The reply the participant's dedupe store holds under ``key`` (None if none).

    This is how a replay is detected without touching the participant classes: an idempotent
    receiver answers a repeat with the very reply object its store holds (``_seen`` returns
    ``stored[1]``), and answers anything else (a first request, a key reused with another body)
    with a new dict. So the reply is a replay exactly when it *is* the object stored under its
    key before the call. A participant without a dedupe store (``NonIdempotentRefund.refund``
    bypasses it) never replays."""
    replies = getattr(participant, "_replies", None)
    if key is None or not isinstance(replies, dict):
        return None
    entry = replies.get(key)
    return entry[1] if isinstance(entry, tuple) and len(entry) == 2 else None


def _row_dicts(service: Service, rows: Iterable[LedgerRow]) -> list[dict[str, Any]]:
    """Ledger rows as the inspection endpoints serve them."""
    return [{**row._asdict(), "participant": row.participant or service.name} for row in rows]


_T = TypeVar("_T")


class _Served:
    """What the app serves: the participant, its store, and the lock that makes requests run one
    at a time (so the check-then-act in the dedupe store cannot interleave)."""

    def __init__(self, service: Service, participant: object, state: ParticipantState) -> None:
        self.service = service
        self.participant = participant
        self.state = state
        self.lock = threading.Lock()

    def replace(self, participant: object) -> None:
        _check_serves(self.service, participant)
        if self.state.path is not None:
            raise ValueError(
                f"this {self.service.name} app keeps its participant in {self.state.path}; "
                "serve another participant with a new app"
            )
        with self.lock:
            self.participant = participant
            self.state = ParticipantState(participant, self.service.name, None)

    def start_afresh(self, participant: object, execution: int | None = None) -> None:
        """Serve ``participant`` and make its state the store's (the saved state and the outbox
        of the one it replaces are dropped)."""
        _check_serves(self.service, participant)
        with self.lock:
            try:
                state = ParticipantState(
                    participant, self.service.name, self.state.path, fresh=True, sync=self.state.sync, execution=execution
                )
            except StoreError as error:
                raise HTTPException(503, f"{self.service.name} could not reset its store: {error}") from error
            self.participant = participant
            self.state = state

    def commit(self) -> None:
        try:
            self.state.commit()
        except StoreError as error:
            # The participant is back at its last saved state: the request had no effect.
            raise HTTPException(503, f"{self.service.name} could not save its state: {error}") from error

    def call(self, op: Operation, fields: dict[str, Any], key: str | None) -> Response:
        with self.lock:
            stored = _stored_reply(self.participant, key)
            rows = _ledger_rows(self.participant)
            before = len(rows)
            reply = getattr(self.participant, op.name)(**fields, idempotency_key=key)
            if len(rows) > before:
                self.publish(rows[before:], fields, key)
            self.commit()
        status = op.status_for(reply)
        headers = {REPLAYED: "true"} if stored is not None and reply is stored else None
        return _JSON(reply, status_code=status, headers=headers)

    def publish(self, rows: list[LedgerRow], fields: Mapping[str, Any], key: str | None) -> None:
        """Publish the events of the ledger rows a request recorded (to the outbox, saved by ``commit``)."""
        state = self.state
        state.publish(
            events_for_rows(
                self.service.name,
                rows,
                first_position=len(state.outbox) + 1,
                fields=fields,
                key=key,
                correlations=state.correlations,
            )
        )

    async def read(self, read: Callable[[], _T]) -> _T:
        """``read()`` under the lock, from the event loop without holding it up: at once when the
        lock is free, else on a worker thread that waits for it. Another thread may hold the lock
        for as long as a saga runs (the order service's blocking place request, or the recovery
        of a restarted one), and the loop must go on answering meanwhile (its ready check first)."""
        if self.lock.acquire(blocking=False):
            try:
                return read()
            finally:
                self.lock.release()
        return await run_in_threadpool(self._read_locked, read)

    def _read_locked(self, read: Callable[[], _T]) -> _T:
        with self.lock:
            return read()

    def events(self, after: int, limit: int) -> dict[str, Any]:
        with self.lock:
            return self.events_unlocked(after, limit)

    def events_unlocked(self, after: int, limit: int) -> dict[str, Any]:
        """`events` for a caller that holds the lock."""
        page = self.state.events(after, limit)
        return {"events": page, "next": after + len(page)}

    def ledger(self) -> list[dict[str, Any]]:
        with self.lock:
            rows = list(getattr(getattr(self.participant, "ledger", None), "rows", ()))
        return _row_dicts(self.service, rows)

    def refuse_next(self) -> None:
        with self.lock:
            refuse = getattr(self.participant, "refuse_next", None)
            if not callable(refuse):
                raise HTTPException(501, f"a {type(self.participant).__name__} cannot be told to refuse")
            refuse()
            self.commit()

    def restart(self) -> None:
        """The participant dies and comes back from what its store keeps (``restart()``), as
        when the service's process is killed and started again."""
        with self.lock:
            restart = getattr(self.participant, "restart", None)
            if not callable(restart):
                raise HTTPException(501, f"a {type(self.participant).__name__} cannot restart")
            restart()


def _endpoint(served: _Served, op: Operation) -> Callable[..., Awaitable[Response]]:
    # async: the participant's method never awaits, so it runs on the event loop without a hop
    # to a worker thread (the in-process runtime sends thousands of requests); the lock still
    # serialises requests when several threads or event loops share one app.
    async def endpoint(body: RequestModel, idempotency_key: str = _KEY_HEADER) -> Response:
        return served.call(op, body.model_dump(), idempotency_key)

    if op.blocking:

        def endpoint(body: RequestModel, idempotency_key: str = _KEY_HEADER) -> Response:  # type: ignore[misc]
            return served.call(op, body.model_dump(), idempotency_key)

    # The body's model is the operation's; FastAPI reads it from the annotation.
    endpoint.__annotations__ = {**endpoint.__annotations__, "body": op.request}
    endpoint.__name__ = endpoint.__qualname__ = op.name
    return endpoint


def _ledger_rows(participant: object) -> list[LedgerRow]:
    """The participant's ledger rows (the list itself), or a new empty list if it keeps none."""
    ledger = getattr(participant, "ledger", None)
    return ledger.rows if isinstance(ledger, Ledger) else []


def _check_serves(service: Service, participant: object) -> None:
    missing = [op.name for op in service.operations if not callable(getattr(participant, op.name, None))]
    if missing:
        raise TypeError(f"a {type(participant).__name__} cannot serve {service.name}: it has no {', '.join(missing)}")


def _invalid(reason: str, problems: list[dict[str, Any]] | None = None) -> Response:
    body: dict[str, Any] = {"status": "rejected", "reason": reason}
    if problems is not None:
        body["detail"] = problems
    return _JSON(body, status_code=422)


def build_app(
    service: Service,
    *,
    participant: object | None = None,
    store_path: str | os.PathLike[str] | None = None,
    inspect: bool = False,
    store_sync: str = "full",
) -> FastAPI:
    """The app of ``service`` (``create_app`` for a service that is not in ``SERVICES``)."""
    if participant is None:
        participant = service.participant()
    _check_serves(service, participant)
    served = _Served(service, participant, ParticipantState(participant, service.name, store_path, sync=store_sync))

    app = FastAPI(
        title=service.title,
        version=API_VERSION,
        description=service.description,
        docs_url=None,
        redoc_url=None,
        default_response_class=_JSON,
    )
    app.state.participant = participant
    app.state.service = service
    app.state.lock = served.lock
    app.state.served = served

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        # Only loc, msg and type: echoing the input could echo anything (a 10,000-deep list).
        problems = [
            {
                "loc": [part if isinstance(part, int) else str(part) for part in error.get("loc", ())],
                "msg": str(error.get("msg", "")),
                "type": str(error.get("type", "")),
            }
            for error in exc.errors()
        ]
        where = "; ".join(f"{'.'.join(map(str, p['loc']))}: {p['msg']}" for p in problems)
        return _invalid(f"invalid request: {where}", problems)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 400:
            # FastAPI's one 400: a JSON body it could not even parse (not UTF-8, nested too
            # deep, a number too long). Rejected like any other invalid body.
            problem = {"loc": ["body"], "msg": str(exc.detail), "type": "body_unparsable"}
            return _invalid(f"invalid request: body: {exc.detail}", [problem])
        return await http_exception_handler(request, exc)

    for op in service.operations:
        app.post(
            op.path,
            status_code=op.ok_status,
            operation_id=op.name,
            summary=op.summary,
            response_description=op.ok,
            responses={
                op.ok_status: {"model": op.reply, "description": op.ok, "headers": _REPLAYED_HEADER, **_links(service, op)},
                op.refused_status: {"model": Refused, "description": op.refused, "headers": _REPLAYED_HEADER},
                422: {"model": Rejected, "description": _REJECTED_DOC, "headers": _REPLAYED_HEADER},
            },
        )(_endpoint(served, op))

    @app.get(
        "/events",
        operation_id="events",
        summary="Read the outbox",
        response_description="The events published after position ``after``, oldest first.",
        responses={422: {"model": Rejected, "description": "Rejected: ``after`` or ``limit`` is not a whole number in range."}},
    )
    async def events(after: int = _AFTER, limit: int = _LIMIT) -> EventPage:
        return _JSON(await served.read(lambda: served.events_unlocked(after, limit)))  # type: ignore[return-value]

    @app.get("/health", operation_id="health", summary="Ready check", response_description="The service is up.")
    async def health() -> Health:
        return Health(status="ok", service=service.name)

    if inspect:

        def renew() -> None:
            # A fresh participant of the same class: the process runtime starts every execution
            # from a new one, as the others do, without starting the service again.
            cls = type(served.participant)
            try:
                fresh = cls()
            except TypeError as error:
                raise HTTPException(501, f"a {cls.__name__} cannot be built without arguments: {error}") from error
            if served.state.path is not None:
                # With a store, the new participant's state replaces the saved one (and its
                # outbox starts empty): the container runtime's services keep a store, so that a
                # participant killed within an execution comes back with what it had.
                served.start_afresh(fresh)
                app.state.participant = fresh
                return
            try:
                serve_participant(app, fresh)
            except ValueError as error:
                raise HTTPException(409, str(error)) from error

        @app.get("/_inspect/ledger", include_in_schema=False)
        async def inspect_ledger() -> list[dict[str, Any]]:
            return served.ledger()

        @app.post("/_inspect/refuse-next", status_code=204, include_in_schema=False)
        async def inspect_refuse_next() -> Response:
            served.refuse_next()
            return Response(status_code=204)

        @app.post("/_inspect/restart", status_code=204, include_in_schema=False)
        async def inspect_restart() -> Response:
            served.restart()
            return Response(status_code=204)

        @app.post("/_inspect/crash", include_in_schema=False)
        async def inspect_crash() -> Response:
            # Die at once, as a killed process does: no answer, nothing saved beyond what the store
            # committed. Under --supervise the service is started again from its store.
            os.kill(os.getpid(), signal.SIGKILL)
            return Response(status_code=204)  # pragma: no cover  (never reached)

        @app.post("/_inspect/reset", include_in_schema=False)
        async def inspect_reset() -> Response:
            # The answer is the ledger of the participant replaced, so that one request ends an
            # execution. No await between reading the ledger and the swap: no request on this
            # event loop can record a row in between.
            rows = served.ledger()
            renew()
            return _JSON(rows)

        # The test build: the harness starts each execution with a fresh participant behind the
        # service, and every effect recorded while serving its request goes back with the answer.
        app.add_middleware(EffectsMiddleware, reset=renew)

    return app


def create_app(
    service: str,
    *,
    participant: object | None = None,
    store_path: str | os.PathLike[str] | None = None,
    inspect: bool = False,
    store_sync: str = "full",
) -> FastAPI:
    """The HTTP app of one reference service (``"inventory"``, ``"payment"``, ``"shipping"`` or
    ``"notification"``).

    ``participant`` is the domain object it serves (a fresh correct one by default; pass a broken
    variant such as ``NonIdempotentRefund()`` to serve that); the app keeps it as
    ``app.state.participant``. With ``store_path`` the participant's state is kept in that SQLite
    file: loaded at start, saved after every request that changed it (``store_sync="normal"``: a
    save survives a killed process, not a power cut, and costs no fsync). ``inspect=True`` adds
    ``GET /_inspect/ledger``, ``POST /_inspect/refuse-next``, ``POST /_inspect/restart`` (the
    participant rebuilt from what it saved, in this process), ``POST /_inspect/crash`` (the
    process kills itself, SIGKILL: under ``--supervise`` another is started from the store) and
    ``POST /_inspect/reset`` (a fresh participant of the same class; it answers the old one's
    ledger), none of them in the contract. A request that carries the harness's ``Saga-Verify-Delivery``,
    ``Saga-Verify-Correlation`` and ``Saga-Verify-Time`` headers gets the ledger rows it causes
    stamped with them."""
    spec = SERVICES.get(service)
    if spec is None:
        raise ValueError(f"unknown service {service!r}; the reference services are {', '.join(SERVICES)}")
    return build_app(spec, participant=participant, store_path=store_path, inspect=inspect, store_sync=store_sync)


def serve_participant(app: FastAPI, participant: object) -> None:
    """Put another participant behind an app made by ``create_app``: the in-process runtime builds
    each app once and serves a fresh participant per execution (building an app takes a few ms).
    Requests already being served finish with the old one. Not for an app with a store, whose
    participant is the one its store keeps."""
    served = getattr(app.state, "served", None)
    if not isinstance(served, _Served):
        raise TypeError("not an app made by saga_verify.reference.services.create_app")
    served.replace(participant)
    app.state.participant = participant
