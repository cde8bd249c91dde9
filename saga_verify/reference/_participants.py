"""The reference participants: inventory, payment, shipping, notification. Each is an idempotent
receiver: a request with a key it has seen gets the stored reply, a seen key with another payload
is rejected, and a compensation that arrives before its forward request leaves a tombstone so the
late request is refused instead of applied."""

from __future__ import annotations

from typing import Any

from saga_verify import Ledger

Reply = dict[str, Any]


def ok(**fields: Any) -> Reply:
    return {"status": "ok", **fields}


def refused(reason: str) -> Reply:
    return {"status": "refused", "reason": reason}


def rejected(reason: str) -> Reply:
    return {"status": "rejected", "reason": reason}


class IdempotentReceiver:
    """Dedupe store keyed by the idempotency key, plus a ledger of effects."""

    def __init__(self) -> None:
        self.ledger = Ledger()
        self._replies: dict[str, tuple[tuple[Any, ...], Reply]] = {}
        self._refuse_next = False
        self._ids = 0

    def refuse_next(self) -> None:
        """Make the next new request refused for a business reason (the refuse fault's hook)."""
        self._refuse_next = True

    def restart(self) -> None:
        """Die and come back from what a service's store keeps (the crash fault's hook): every
        attribute is saved and restored through the store's exact form except those the class
        names ``transient``, which start afresh. The ledger object stays (it records effects,
        which a crash does not undo)."""
        from ._state import dump_state, restore_state

        saved = dump_state(self)
        ledger = self.ledger
        fresh = type(self)()
        fresh.ledger = ledger
        restore_state(fresh, saved)
        self.__dict__.clear()
        self.__dict__.update(vars(fresh))

    def _take_refusal(self) -> bool:
        refuse, self._refuse_next = self._refuse_next, False
        return refuse

    def _new_id(self, prefix: str) -> str:
        self._ids += 1
        return f"{prefix}-{self._ids}"

    def _seen(self, key: str | None, payload: tuple[Any, ...]) -> Reply | None:
        """The stored reply for a repeated key, a rejection for a reused one, else None."""
        if key is None:
            return None
        stored = self._replies.get(key)
        if stored is None:
            return None
        if stored[0] != payload:
            return rejected(f"idempotency key {key!r} was used for a different request")
        return stored[1]

    def _remember(self, key: str | None, payload: tuple[Any, ...], reply: Reply) -> Reply:
        if key is not None:
            self._replies[key] = (payload, reply)
        return reply


class Inventory(IdempotentReceiver):
    """Reserves stock; ``release`` puts it back."""

    def __init__(self, stock: dict[str, int] | None = None) -> None:
        super().__init__()
        self.stock = dict(stock or {"sku-1": 10})
        self.reservations: dict[str, dict[str, Any]] = {}
        self._by_key: dict[str, str] = {}
        self._tombstones: set[str] = set()

    def reserve(self, *, order_id: str, sku: str, qty: int, idempotency_key: str | None = None) -> Reply:
        payload = ("reserve", order_id, sku, qty)
        stored = self._seen(idempotency_key, payload)
        if stored is not None:
            return stored
        if idempotency_key in self._tombstones:
            reply = refused("cancelled: released before it arrived")
        elif self._take_refusal() or not self.in_stock(sku, qty):
            reply = refused("out_of_stock")
        else:
            self.stock[sku] -= qty
            rid = self._new_id("res")
            self.reservations[rid] = {"order_id": order_id, "sku": sku, "qty": qty, "active": True}
            if idempotency_key is not None:
                self._by_key[idempotency_key] = rid
            self.ledger.record("reserve", qty, rid)
            reply = ok(reservation_id=rid)
        return self._remember(idempotency_key, payload, reply)

    def in_stock(self, sku: str, qty: int) -> bool:
        """Whether ``qty`` of ``sku`` is left to reserve (checked in the same call that reserves)."""
        return self.stock.get(sku, 0) >= qty

    def release(self, *, reserve_key: str, idempotency_key: str | None = None) -> Reply:
        payload = ("release", reserve_key)
        stored = self._seen(idempotency_key, payload)
        if stored is not None:
            return stored
        rid = self._by_key.get(reserve_key)
        if rid is None:
            self._tombstones.add(reserve_key)
            reply = ok(released=None)
        else:
            reservation = self.reservations[rid]
            if reservation["active"]:
                reservation["active"] = False
                self.stock[reservation["sku"]] += reservation["qty"]
                self.ledger.record("release", reservation["qty"], rid)
            reply = ok(released=rid)
        return self._remember(idempotency_key, payload, reply)


class Payment(IdempotentReceiver):
    """Charges a card; ``refund`` gives the money back."""

    def __init__(self) -> None:
        super().__init__()
        self.charges: dict[str, dict[str, Any]] = {}
        self._by_key: dict[str, str] = {}
        self._tombstones: set[str] = set()

    def charge(self, *, order_id: str, amount: int, idempotency_key: str | None = None) -> Reply:
        payload = ("charge", order_id, amount)
        stored = self._seen(idempotency_key, payload)
        if stored is not None:
            return stored
        if idempotency_key in self._tombstones:
            reply = refused("cancelled: refunded before it arrived")
        elif self._take_refusal():
            reply = refused("card_declined")
        else:
            cid = self._new_id("ch")
            self.charges[cid] = {"order_id": order_id, "amount": amount, "refunded": False}
            if idempotency_key is not None:
                self._by_key[idempotency_key] = cid
            self.ledger.record("charge", amount, cid)
            reply = ok(charge_id=cid)
        return self._remember(idempotency_key, payload, reply)

    def refund(self, *, charge_key: str, idempotency_key: str | None = None) -> Reply:
        payload = ("refund", charge_key)
        stored = self._seen(idempotency_key, payload)
        if stored is not None:
            return stored
        cid = self._by_key.get(charge_key)
        if cid is None:
            self._tombstones.add(charge_key)
            reply = ok(refunded=None)
        else:
            charge = self.charges[cid]
            if not charge["refunded"]:
                charge["refunded"] = True
                self.ledger.record("refund", charge["amount"], cid)
            reply = ok(refunded=cid)
        return self._remember(idempotency_key, payload, reply)


class Shipping(IdempotentReceiver):
    """Creates a shipment for a reservation; ``cancel`` calls it off."""

    def __init__(self) -> None:
        super().__init__()
        self.shipments: dict[str, dict[str, Any]] = {}
        self._by_key: dict[str, str] = {}
        self._tombstones: set[str] = set()

    def create(self, *, order_id: str, reservation_id: str, idempotency_key: str | None = None) -> Reply:
        payload = ("create", order_id, reservation_id)
        stored = self._seen(idempotency_key, payload)
        if stored is not None:
            return stored
        if not isinstance(reservation_id, str) or not reservation_id:
            reply = rejected("a shipment needs the reservation id of its stock")
        elif idempotency_key in self._tombstones:
            reply = refused("cancelled: cancelled before it arrived")
        elif self._take_refusal():
            reply = refused("address_undeliverable")
        else:
            sid = self._new_id("sh")
            self.shipments[sid] = {"order_id": order_id, "reservation_id": reservation_id, "cancelled": False}
            if idempotency_key is not None:
                self._by_key[idempotency_key] = sid
            self.ledger.record("create", 1, sid)
            reply = ok(shipment_id=sid)
        return self._remember(idempotency_key, payload, reply)

    def cancel(self, *, shipment_key: str, idempotency_key: str | None = None) -> Reply:
        payload = ("cancel", shipment_key)
        stored = self._seen(idempotency_key, payload)
        if stored is not None:
            return stored
        sid = self._by_key.get(shipment_key)
        if sid is None:
            self._tombstones.add(shipment_key)
            reply = ok(cancelled=None)
        else:
            shipment = self.shipments[sid]
            if not shipment["cancelled"]:
                shipment["cancelled"] = True
                self.ledger.record("cancel", 1, sid)
            reply = ok(cancelled=sid)
        return self._remember(idempotency_key, payload, reply)


class Notification(IdempotentReceiver):
    """Tells the customer; nothing can take a message back."""

    def send(self, *, order_id: str, message: str, idempotency_key: str | None = None) -> Reply:
        payload = ("send", order_id, message)
        stored = self._seen(idempotency_key, payload)
        if stored is not None:
            return stored
        mid = self._new_id("msg")
        self.ledger.record("send", 1, mid)
        return self._remember(idempotency_key, payload, ok(message_id=mid))
