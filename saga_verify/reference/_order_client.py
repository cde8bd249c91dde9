"""The order service's HTTP client for its four participants: one thin function per operation.

This is what the order service's consumer pacts are about. Each function sends one JSON request
(with the ``Idempotency-Key`` header when a key is given) and reads the reply the way the saga
does: 200/201 are ok, 402/409 are business refusals, 422 is a rejected request (an idempotency
key reused for another body). Any other status raises ``httpx.HTTPStatusError``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

__all__ = [
    "HttpServices",
    "over_http",
    "Reply",
    "cancel_shipment",
    "charge",
    "create_shipment",
    "refund",
    "release",
    "reserve",
    "send_notification",
]

#: The statuses the order service understands; anything else is an error it does not handle.
UNDERSTOOD = frozenset({200, 201, 402, 409, 422})
REPLAYED_HEADER = "Idempotency-Replayed"


@dataclass(frozen=True)
class Reply:
    """A participant's answer as the order service reads it."""

    status_code: int
    body: dict[str, Any]
    """The JSON object the participant answered."""
    replayed: bool
    """True when the participant answered from its idempotency store (``Idempotency-Replayed: true``)."""

    @property
    def ok(self) -> bool:
        return self.body.get("status") == "ok"

    @property
    def refused(self) -> bool:
        """A business refusal: declined card, out of stock, undeliverable address."""
        return self.body.get("status") == "refused"

    @property
    def rejected(self) -> bool:
        """The request itself was turned away (an idempotency key reused for another request)."""
        return self.body.get("status") == "rejected"


def _post(client: httpx.Client, path: str, body: dict[str, Any], idempotency_key: str | None) -> Reply:
    headers = {} if idempotency_key is None else {"Idempotency-Key": idempotency_key}
    response = client.post(path, json=body, headers=headers)
    if response.status_code not in UNDERSTOOD:
        raise httpx.HTTPStatusError(
            f"{response.request.method} {path} answered {response.status_code}, which the order service does not handle",
            request=response.request,
            response=response,
        )
    payload = response.json()
    if not isinstance(payload, dict):
        raise httpx.DecodingError(
            f"{path} answered {type(payload).__name__}, not a JSON object", request=response.request
        )
    replayed = response.headers.get(REPLAYED_HEADER, "").lower() == "true"
    return Reply(response.status_code, payload, replayed)


def reserve(client: httpx.Client, *, order_id: str, sku: str, qty: int, idempotency_key: str | None = None) -> Reply:
    """inventory: reserve ``qty`` of ``sku`` for the order (201 ``reservation_id``; 409 out of stock)."""
    return _post(client, "/reservations", {"order_id": order_id, "sku": sku, "qty": qty}, idempotency_key)


def release(client: httpx.Client, *, reserve_key: str, idempotency_key: str | None = None) -> Reply:
    """inventory: release the reservation made with idempotency key ``reserve_key`` (200 ``released``)."""
    return _post(client, "/releases", {"reserve_key": reserve_key}, idempotency_key)


def charge(client: httpx.Client, *, order_id: str, amount: int, idempotency_key: str | None = None) -> Reply:
    """payment: charge ``amount`` for the order (201 ``charge_id``; 402 declined)."""
    return _post(client, "/charges", {"order_id": order_id, "amount": amount}, idempotency_key)


def refund(client: httpx.Client, *, charge_key: str, idempotency_key: str | None = None) -> Reply:
    """payment: refund the charge made with idempotency key ``charge_key`` (200 ``refunded``)."""
    return _post(client, "/refunds", {"charge_key": charge_key}, idempotency_key)


def create_shipment(
    client: httpx.Client, *, order_id: str, reservation_id: str, idempotency_key: str | None = None
) -> Reply:
    """shipping: ship the reserved stock (201 ``shipment_id``; 409 address undeliverable)."""
    return _post(client, "/shipments", {"order_id": order_id, "reservation_id": reservation_id}, idempotency_key)


def cancel_shipment(client: httpx.Client, *, shipment_key: str, idempotency_key: str | None = None) -> Reply:
    """shipping: cancel the shipment created with idempotency key ``shipment_key`` (200 ``cancelled``)."""
    return _post(client, "/cancellations", {"shipment_key": shipment_key}, idempotency_key)


def send_notification(
    client: httpx.Client, *, order_id: str, message: str, idempotency_key: str | None = None
) -> Reply:
    """notification: tell the customer (201 ``message_id``); irreversible."""
    return _post(client, "/notifications", {"order_id": order_id, "message": message}, idempotency_key)


#: The functions behind each participant's operations, as the saga names them.
OPERATIONS: dict[str, dict[str, Callable[..., Reply]]] = {
    "inventory": {"reserve": reserve, "release": release},
    "payment": {"charge": charge, "refund": refund},
    "shipping": {"create": create_shipment, "cancel": cancel_shipment},
    "notification": {"send": send_notification},
}

_FIRST = next(iter(OPERATIONS))


class _ParticipantClient:
    """One participant as the saga calls it (``payment.charge(order_id=..., ...)``), over HTTP.
    Transport failures become the builtin errors the saga already handles, so the same saga code
    runs against plain participants and against HTTP services."""

    def __init__(self, client: httpx.Client, operations: dict[str, Callable[..., Reply]]) -> None:
        self._client = client
        self._operations = operations

    def __getattr__(self, operation: str) -> Callable[..., dict[str, Any]]:
        function = self._operations.get(operation)
        if function is None:
            raise AttributeError(operation)

        def call(**fields: Any) -> dict[str, Any]:
            try:
                return function(self._client, **fields).body
            except httpx.TimeoutException as exc:
                raise TimeoutError(str(exc)) from exc
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
                # The connection broke after the request went out: it may have been applied.
                raise ConnectionResetError(str(exc)) from exc
            except httpx.TransportError as exc:
                raise ConnectionError(str(exc)) from exc

        return call


def over_http(services: Any) -> bool:
    """Whether the saga's participants are HTTP services (``services.<name>`` an httpx client)."""
    # The first participant decides in the common case (not HTTP) without a generator.
    return isinstance(services[_FIRST], httpx.Client) and all(isinstance(services[name], httpx.Client) for name in OPERATIONS)


class HttpServices:
    """What the saga sees as ``services`` when its participants are HTTP services: the harness's
    httpx clients, wrapped so the saga calls operations as methods."""

    def __init__(self, services: Any) -> None:
        self.clock = services.clock
        # The saga's durable store, for a saga that declares one (the harness's, not an HTTP peer).
        self.store = vars(services).get("store")
        for name, operations in OPERATIONS.items():
            setattr(self, name, _ParticipantClient(services[name], operations))
