"""The reference participants as HTTP services (FastAPI apps), for the ``asgi``, ``process`` and
``container`` runtimes and for contract verification.

``create_app(service, *, participant=None, store_path=None, inspect=False)`` builds the app of
one service; ``SERVICES`` maps each service name to its description (operations, routes, the
participant it serves by default). Every operation is a ``POST`` with a JSON body and an optional
``Idempotency-Key`` header; the reply body is the participant's reply dict:

=============  ===========  ======================  ====================================  ======
service        operation    route                   body                                  ok
=============  ===========  ======================  ====================================  ======
inventory      reserve      ``POST /reservations``  order_id: str, sku: str, qty: int>=1  201
inventory      release      ``POST /releases``      reserve_key: str                      200
payment        charge       ``POST /charges``       order_id: str, amount: int>=1         201
payment        refund       ``POST /refunds``       charge_key: str                       200
shipping       create       ``POST /shipments``     order_id: str, reservation_id: str    201
shipping       cancel       ``POST /cancellations`` shipment_key: str                     200
notification   send         ``POST /notifications`` order_id: str, message: str           201
=============  ===========  ======================  ====================================  ======

A refusal (out of stock, card declined, undeliverable, a tombstone) is 402 for ``charge`` and 409
for the others; a rejection (the key used for another request, an invalid body or header, a
shipment without a reservation id) is 422 with ``{"status": "rejected", "reason": ...}``. A
stored reply to a repeated request carries ``Idempotency-Replayed: true``. ``GET /health`` is the
ready check. The apps generate exactly the contracts in ``contracts/openapi/<service>.yaml``.

``serve_participant(app, participant)`` puts a fresh participant behind an app already built (the
in-process runtime does this once per execution instead of building the app again).

Every effect is also published as an event (``payment.charged``, ``stock.released``, ...) to the
service's outbox, saved with its state, and read with ``GET /events?after=N`` (`_events`; the
schemas are in ``contracts/events/``). The order service (``create_order_app``, `_order_app`)
runs the orchestrated saga behind ``POST /orders`` against the four participant services and
publishes ``order.completed``, ``order.compensated`` or ``order.failed``; its contract is
``contracts/openapi/order.yaml``.
"""

from __future__ import annotations

from ._app import SERVICES, create_app, serve_participant
from ._order_app import create_order_app

__all__ = ["SERVICES", "create_app", "create_order_app", "serve_participant"]
