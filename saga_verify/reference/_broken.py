"""Deliberately broken variants of the order saga, each with exactly one classic bug (named in its
docstring). Each differs from the correct saga or participant by one overridden method."""

from __future__ import annotations

from typing import Any

from ._durable import DurableOrderSaga
from ._orchestrated import GaveUp, OrderSaga, Reply, StepFailed
from ._participants import Inventory, Payment, ok
from ._saga_log import SagaLog


class ChargeWithoutKey(OrderSaga):
    """Charges without an idempotency key: a retry after a lost reply charges the card again."""

    def charge(self) -> None:
        self.step(self.services.payment.charge, self.refund, order_id=self.order_id, amount=self.order["amount"])


class FreshKeyOnRetry(OrderSaga):
    """Retries shipment creation with a fresh key per attempt: a lost reply ships twice."""

    def ship(self) -> None:
        for attempt in range(self.attempts):
            if attempt:
                self.services.clock.sleep(self.backoff)
            try:
                reply = self.services.shipping.create(
                    order_id=self.order_id,
                    reservation_id=self.reservation_id,
                    idempotency_key=self.key(f"ship-{attempt + 1}"),
                )
            except (TimeoutError, ConnectionError):
                continue
            if reply.get("status") != "ok":
                raise StepFailed(reply.get("reason"))
            self.undo.append(self.cancel_shipment)
            return
        raise StepFailed("shipping unreachable")


class LostReplyNotCompensated(OrderSaga):
    """Treats a step that timed out as not done: an applied step whose reply was lost is never
    compensated (the reservation, charge or shipment leaks)."""

    def step(self, call: Any, compensation: Any, **request: Any) -> Reply:
        try:
            reply = self.retry(call, **request)
        except GaveUp as gave_up:
            raise StepFailed from gave_up
        if reply.get("status") != "ok":
            raise StepFailed(reply.get("reason"))
        self.undo.append(compensation)
        return reply


class ForwardOrderCompensation(OrderSaga):
    """Compensates in the order the steps ran instead of in reverse."""

    def compensate(self) -> str:
        complete = True
        for undo in self.undo:
            try:
                undo()
            except GaveUp:
                complete = False
        return "compensated" if complete else "failed"


class NotifyBeforePivot(OrderSaga):
    """Sends the irreversible notification before the shipment exists: a failed shipment leaves
    a customer told of an order that was rolled back."""

    def run(self) -> str:
        try:
            self.reserve()
            self.charge()
            self.notify()
            self.ship()
        except StepFailed:
            return self.compensate()
        return "completed"


class SwallowedCompensationError(OrderSaga):
    """Swallows a compensation that could not be made and reports the saga as compensated."""

    def compensate(self) -> str:
        for undo in reversed(self.undo):
            try:
                undo()
            except GaveUp:
                pass  # the bug: the compensation that could not be made is forgotten
        return "compensated"


class UnboundedRetry(OrderSaga):
    """Retries a failing call forever: a participant that is down keeps the saga from ending."""

    def retry(self, call: Any, **request: Any) -> Reply:
        attempt = 0
        while True:
            if attempt:
                self.services.clock.sleep(self.backoff)
            attempt += 1
            try:
                reply: Reply = call(**request)
                return reply
            except (TimeoutError, ConnectionError):
                continue


class DeclineTreatedAsSuccess(OrderSaga):
    """Ignores the payment's answer: a declined card ships the order unpaid."""

    def charge(self) -> None:
        try:
            self.retry(
                self.services.payment.charge,
                order_id=self.order_id,
                amount=self.order["amount"],
                idempotency_key=self.key("charge"),
            )
        except GaveUp as gave_up:
            if gave_up.maybe_applied:
                self.undo.append(self.refund)
            raise StepFailed from gave_up
        self.undo.append(self.refund)


class NonIdempotentRefund(Payment):
    """Payment service whose refund is not idempotent: a retried or duplicated refund pays out again."""

    def refund(self, *, charge_key: str, idempotency_key: str | None = None) -> Reply:
        cid = self._by_key.get(charge_key)
        if cid is None:
            self._tombstones.add(charge_key)
            return ok(refunded=None)
        self.charges[cid]["refunded"] = True
        self.ledger.record("refund", self.charges[cid]["amount"], cid)
        return ok(refunded=cid)


class RefundForgetsCharge(Payment):
    """Payment service that forgets a charge's idempotency record when it refunds it: a late
    duplicate of the charge is applied again after the saga was compensated."""

    def refund(self, *, charge_key: str, idempotency_key: str | None = None) -> Reply:
        reply = super().refund(charge_key=charge_key, idempotency_key=idempotency_key)
        self._replies.pop(charge_key, None)
        self._by_key.pop(charge_key, None)
        self._tombstones.discard(charge_key)
        return reply


class VolatileDedupePayment(Payment):
    """Keeps its idempotency store in memory only: after a restart it charges a retried request again."""

    # Not saved with the rest of its state, so a crash forgets every key it has seen.
    transient = ("_replies",)


class CallsBeforeIntent(DurableOrderSaga):
    """Calls a participant before it logs its intent: a coordinator that dies after the call and
    before the log write leaves no trace of it, and the one that recovers makes it again under a
    key of its own."""

    def key_for(self, step: str) -> str:
        intent = self.recorded("intent", step)
        return str(intent["key"]) if intent is not None else self.mint(step)

    def call(self, step: str, key: str, request: dict[str, Any], inherited: bool = False) -> Reply:
        try:
            return super().call(step, key, request, inherited)
        finally:
            # The bug: the intent is logged only once the call is over.
            if self.recorded("intent", step) is None:
                self.write({"type": "intent", "step": step, "key": key})


class FreshKeysOnRecovery(DurableOrderSaga):
    """Logs its intent before each call, but a recovering coordinator re-runs an unfinished step
    under a key it mints anew instead of the key of the logged intent."""

    def key_for(self, step: str) -> str:
        key = self.mint(step)
        if self.recorded("intent", step) is None or str(self.recorded("intent", step)["key"]) != key:  # type: ignore[index]
            self.write({"type": "intent", "step": step, "key": key})
        return key


class CompensationNotResumed(DurableOrderSaga):
    """Recovers only orders that were going forward: one whose coordinator died while
    compensating is never taken up again, its charge or reservation left in effect."""

    @staticmethod
    def resumable(log: SagaLog) -> list[str]:
        return [s for s in log.unfinished() if not any(e["type"] == "compensating" for e in log.entries(s))]


class LeaseWithoutFencing(DurableOrderSaga):
    """Takes the order's lease but writes without its fencing token: a coordinator paused past its
    lease, and taken over, goes on when it wakes under keys of its own, and charges again."""

    def write(self, entry: dict[str, Any]) -> None:
        self.log.append(self.order_id, entry)
        self.entries.append(entry)


class DuplicateStartAfterCompletion(DurableOrderSaga):
    """Tells a redelivered start command from a new order by the log's unfinished orders: a start
    delivered again after the order ended places it anew, under new keys, and charges again."""

    def known(self) -> list[dict[str, Any]]:
        return self.log.entries(self.order_id) if self.order_id in self.log.unfinished() else []


class CheckThenReserve(DurableOrderSaga):
    """Reserves stock by asking how much is left, then taking it in a second call: two orders for
    the last of it both see it there, and both take it."""

    def call(self, step: str, key: str, request: dict[str, Any], inherited: bool = False) -> Reply:
        if step == "reserve" and not inherited:  # (a reservation an earlier coordinator may have made is retried as is)
            try:
                left = self.retry(self.services.inventory.available, sku=request["sku"])
            except GaveUp as gave_up:
                self.write({"type": "outcome", "step": step, "status": "not-delivered"})
                raise StepFailed(step) from gave_up
            if left["available"] < request["qty"]:
                self.write({"type": "outcome", "step": step, "status": "refused"})
                raise StepFailed("out_of_stock")
        return super().call(step, key, request, inherited)


class TrustingInventory(Inventory):
    """An inventory that tells how much is left and reserves without looking again: it trusts the
    caller to have asked first (it serves `CheckThenReserve`; the correct saga never asks, and
    reserves through `reserve`'s own check)."""

    def available(self, *, sku: str) -> Reply:
        return ok(available=self.stock.get(sku, 0))

    def in_stock(self, sku: str, qty: int) -> bool:
        return True
