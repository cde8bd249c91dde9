"""The participants every guide example runs against: an order's stock, payment and shipment,
each an idempotent receiver (the same key gets the stored reply; an undo leaves a tombstone, so a
late request it overtook is refused). Sync methods, so sync and async sagas call them alike."""

from __future__ import annotations

from typing import Any

from saga_verify import Ledger, Step

ORDER = {"order_id": "o-1", "sku": "sku-1", "qty": 2, "amount": 100}
Reply = dict[str, Any]


class _Receiver:
    def __init__(self) -> None:
        self.ledger = Ledger()
        self.replies: dict[str, Reply] = {}
        self.applied: dict[str, tuple[str, float]] = {}
        self.undone: set[str] = set()
        self.refusing = False

    def refuse_next(self) -> None:
        self.refusing = True

    def _do(self, action: str, key: str | None, amount: float) -> Reply:
        if key is not None and key in self.replies:
            return self.replies[key]
        if key is not None and key in self.undone:
            reply: Reply = {"status": "refused", "reason": "undone"}
        elif self.refusing:
            self.refusing = False
            reply = {"status": "refused", "reason": "declined"}
        else:
            ref = f"{action}-{len(self.ledger) + 1}"
            self.applied[key or ref] = (ref, amount)
            self.ledger.record(action, amount, ref)
            reply = {"status": "ok", "ref": ref}
        if key is not None:
            self.replies[key] = reply
        return reply

    def _undo(self, compensation: str, of_key: str) -> Reply:
        if of_key not in self.undone:
            self.undone.add(of_key)
            applied = self.applied.pop(of_key, None)
            if applied is not None:
                self.ledger.record(compensation, applied[1], applied[0])
        return {"status": "ok"}


class Inventory(_Receiver):
    def reserve(self, order_id: str, sku: str, qty: int, idempotency_key: str | None = None) -> Reply:
        return self._do("reserve", idempotency_key, qty)

    def release(self, reserve_key: str, idempotency_key: str) -> Reply:
        return self._undo("release", reserve_key)


class Payment(_Receiver):
    def charge(self, order_id: str, amount: int, idempotency_key: str | None = None) -> Reply:
        return self._do("charge", idempotency_key, amount)

    def refund(self, charge_key: str, idempotency_key: str) -> Reply:
        return self._undo("refund", charge_key)


class Shipping(_Receiver):
    def create(self, order_id: str, idempotency_key: str | None = None) -> Reply:
        return self._do("create", idempotency_key, 1)

    def cancel(self, create_key: str, idempotency_key: str) -> Reply:
        return self._undo("cancel", create_key)


STEPS = [
    Step("inventory", "reserve", "release"),
    Step("payment", "charge", "refund", refuse=Payment.refuse_next),
    Step("shipping", "create", "cancel", refuse=Shipping.refuse_next),
]


def participants() -> dict[str, object]:
    return {"inventory": Inventory(), "payment": Payment(), "shipping": Shipping()}
