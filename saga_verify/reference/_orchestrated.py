"""The correct orchestrated order saga: reserve stock, charge, create the shipment (with the
reservation id), then notify; on failure undo in reverse (cancel, refund, release).

Policy, and why:
- every call carries a stable idempotency key, so a retry after a lost reply is harmless;
- transport errors are retried a bounded number of times with back-off on the virtual clock;
- a timeout or a connection reset after the request went out is an unknown outcome; a refused
  connection is not;
- a step whose outcome is unknown (it timed out) is compensated as if it had happened:
  compensations are idempotent and leave tombstones, so undoing what never happened is safe;
- a business refusal is final: nothing to undo for that step;
- the notification is irreversible, so it is sent only once every other step succeeded; if it
  cannot be sent the order still stands (it is left to an outbox) and the saga says "completed";
- if a compensation cannot be made, the saga says "failed" (an operator must act), never
  "compensated".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Reply = dict[str, Any]


class StepFailed(Exception):
    """A forward step did not happen (refused, rejected, or gave up): the saga goes back."""


class GaveUp(Exception):
    """Every attempt of a call failed."""

    def __init__(self, maybe_applied: bool) -> None:
        super().__init__("gave up" + (" (outcome unknown)" if maybe_applied else ""))
        self.maybe_applied = maybe_applied


class OrderSaga:
    """One order's saga; ``run`` returns its outcome."""

    attempts = 3
    backoff = 0.2

    def __init__(self, services: Any, order: dict[str, Any]) -> None:
        self.services = services
        self.order = order
        self.order_id: str = order["order_id"]
        self.reservation_id: str | None = None
        self.notification_pending = False
        #: Compensations of the steps that did, or may have, taken effect.
        self.undo: list[Callable[[], Reply]] = []

    def key(self, what: str) -> str:
        return f"{self.order_id}:{what}"

    # -- the saga ----------------------------------------------------------------------------
    def run(self) -> str:
        try:
            self.reserve()
            self.charge()
            self.ship()
        except StepFailed:
            return self.compensate()
        self.notify()
        return "completed"

    def reserve(self) -> None:
        reply = self.step(
            self.services.inventory.reserve,
            self.release,
            order_id=self.order_id,
            sku=self.order["sku"],
            qty=self.order["qty"],
            idempotency_key=self.key("reserve"),
        )
        self.reservation_id = reply["reservation_id"]

    def charge(self) -> None:
        self.step(
            self.services.payment.charge,
            self.refund,
            order_id=self.order_id,
            amount=self.order["amount"],
            idempotency_key=self.key("charge"),
        )

    def ship(self) -> None:
        self.step(
            self.services.shipping.create,
            self.cancel_shipment,
            order_id=self.order_id,
            reservation_id=self.reservation_id,
            idempotency_key=self.key("ship"),
        )

    def notify(self) -> None:
        try:
            self.retry(
                self.services.notification.send,
                order_id=self.order_id,
                message=f"order {self.order_id} is on its way",
                idempotency_key=self.key("notify"),
            )
        except GaveUp:
            self.notification_pending = True

    # -- compensations -----------------------------------------------------------------------
    def release(self) -> Reply:
        return self.retry(self.services.inventory.release, reserve_key=self.key("reserve"), idempotency_key=self.key("release"))

    def refund(self) -> Reply:
        return self.retry(self.services.payment.refund, charge_key=self.key("charge"), idempotency_key=self.key("refund"))

    def cancel_shipment(self) -> Reply:
        return self.retry(self.services.shipping.cancel, shipment_key=self.key("ship"), idempotency_key=self.key("cancel"))

    def compensate(self) -> str:
        complete = True
        for undo in reversed(self.undo):
            try:
                undo()
            except GaveUp:
                complete = False
        return "compensated" if complete else "failed"

    # -- calling participants ----------------------------------------------------------------
    def step(self, call: Callable[..., Reply], compensation: Callable[[], Reply], **request: Any) -> Reply:
        """A forward step: refused or rejected means it did not happen; an unknown outcome is
        compensated as if it had."""
        try:
            reply = self.retry(call, **request)
        except GaveUp as gave_up:
            if gave_up.maybe_applied:
                self.undo.append(compensation)
            raise StepFailed from gave_up
        if reply.get("status") != "ok":
            raise StepFailed(reply.get("reason"))
        self.undo.append(compensation)
        return reply

    def retry(self, call: Callable[..., Reply], **request: Any) -> Reply:
        """Call with the same request (and key) until it answers, at most ``attempts`` times."""
        maybe_applied = False
        for attempt in range(self.attempts):
            if attempt:
                self.services.clock.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                return call(**request)
            except (TimeoutError, ConnectionResetError):
                # No answer to a request that was sent (a timeout, or the connection broken
                # under it): it may have taken effect.
                maybe_applied = True
            except ConnectionError:
                pass  # not delivered: nothing happened, a retry is safe
        raise GaveUp(maybe_applied)
