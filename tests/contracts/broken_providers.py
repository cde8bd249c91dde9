"""Deliberately broken providers shared by the contract-check tests: each must be caught."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from saga_verify.reference._participants import Shipping
from saga_verify.reference.services import create_app


class CancelCrashesTwice(Shipping):
    """Broken: cancelling a shipment a second time (with any key, or none) crashes."""

    def __init__(self) -> None:
        super().__init__()
        self.cancelled_keys: set[str] = set()

    def cancel(self, *, shipment_key: str, idempotency_key: str | None = None) -> dict[str, Any]:
        if shipment_key in self.cancelled_keys:
            raise LookupError(f"shipment {shipment_key!r} is gone")
        self.cancelled_keys.add(shipment_key)
        return super().cancel(shipment_key=shipment_key, idempotency_key=idempotency_key)


def crashing_shipping_app() -> Any:
    """Shipping served with `CancelCrashesTwice`; the crash is answered 500 (as a server in front of
    a crashing handler answers), instead of escaping into the test client."""
    app = create_app("shipping", participant=CancelCrashesTwice())

    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": f"internal error: {exc}"}, status_code=500)

    app.add_exception_handler(LookupError, server_error)
    return app
