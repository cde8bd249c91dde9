"""A small order saga on time: it charges, waits for the payment provider's webhook with a
deadline, then confirms; it retries within each step's budget and settles by the saga's
deadline. Broken variants each carry one timing bug (named in its docstring). Built on the
public API only, and on the ``sim`` runtime only (its participants are plain objects)."""

from __future__ import annotations

from typing import Any

from saga_verify import Ledger, Saga, Step

#: The order every timed execution places.
TIMED_ORDER = {"order_id": "order-7", "amount": 40}
#: Virtual seconds by which the saga must have settled.
DEADLINE = 120.0
#: What the saga keeps back from its deadline, when it waits for the webhook, to compensate in.
COMPENSATION_ALLOWANCE = 30.0

TIMED_STEPS = (
    Step("payment", "charge", compensation="refund", timeout=2.0, retries=3, events="paid"),
    Step("notification", "confirm", timeout=2.0, retries=3),
)


class WebhookPayment:
    """A payment provider that answers a charge with "pending" and settles it on its own: a few
    seconds later it sends the ``paid`` webhook. Idempotent by key; a refund cancels the order,
    so a charge that arrives after it (held in the network) is refused."""

    settle_after = 5.0

    def __init__(self) -> None:
        self.ledger = Ledger()
        self._charges: dict[str, dict[str, Any]] = {}
        self._refunds: dict[str, dict[str, Any]] = {}
        self._open: dict[str, tuple[str, float]] = {}
        self._cancelled: set[str] = set()

    def charge(self, order_id: str, amount: float, idempotency_key: str) -> dict[str, Any]:
        done = self._charges.get(idempotency_key)
        if done is not None:
            return done
        if order_id in self._cancelled:
            reply = {"status": "refused", "reason": "order cancelled"}
        else:
            charge_id = f"ch-{order_id}"
            self.ledger.record("charge", amount, charge_id, correlation_id=order_id)
            self._open[order_id] = (charge_id, amount)
            reply = {"status": "pending", "charge_id": charge_id}
            self.ledger.send("paid", {"order_id": order_id, "charge_id": charge_id}, after=self.settle_after)
        self._charges[idempotency_key] = reply
        return reply

    def refund(self, order_id: str, idempotency_key: str) -> dict[str, Any]:
        done = self._refunds.get(idempotency_key)
        if done is not None:
            return done
        self._cancelled.add(order_id)
        found = self._open.pop(order_id, None)
        if found is not None:
            self.ledger.record("refund", found[1], found[0], correlation_id=order_id)
        reply = {"status": "ok", "refunded": found[0] if found else None}
        self._refunds[idempotency_key] = reply
        return reply


class Confirmations:
    """Sends the customer the order confirmation (irreversible), once per key."""

    def __init__(self) -> None:
        self.ledger = Ledger()
        self._sent: dict[str, dict[str, Any]] = {}

    def confirm(self, order_id: str, idempotency_key: str) -> dict[str, Any]:
        done = self._sent.get(idempotency_key)
        if done is None:
            self.ledger.record("confirm", 1, f"mail-{order_id}", correlation_id=order_id)
            done = self._sent[idempotency_key] = {"status": "ok"}
        return done


def timed_participants() -> dict[str, object]:
    return {"payment": WebhookPayment(), "notification": Confirmations()}


class TimedOrderSaga:
    """The correct saga: charge (retried within budget), wait for the webhook until the deadline
    less what compensating takes, confirm; on anything unanswered, refund, and report failed
    (for a person) only if the refund itself never got through."""

    def __init__(self, services: Any, order: dict[str, Any]) -> None:
        self.services = services
        self.order = order
        self.order_id = str(order["order_id"])

    def run(self) -> str:
        reply = self.charge()
        if reply is None or reply.get("status") != "pending":
            return self.refund()  # the charge may have taken effect unseen
        if not self.await_payment():
            return self.payment_never_came()
        try:
            self.services.retry(self.services.notification.confirm, order_id=self.order_id, idempotency_key=f"{self.order_id}:confirm")
        except OSError:
            pass  # paid is paid: a confirmation that never got through is resent by hand
        return "completed"

    def charge(self) -> dict[str, Any] | None:
        """The charge's reply, or None when it went unanswered within the step's retry budget."""
        try:
            reply: dict[str, Any] = self.services.retry(
                self.services.payment.charge,
                order_id=self.order_id,
                amount=self.order["amount"],
                idempotency_key=f"{self.order_id}:charge",
            )
        except OSError:
            return None
        return reply

    def payment_never_came(self) -> str:
        """The webhook did not come in time: the pending charge is refunded."""
        return self.refund()

    def await_payment(self) -> bool:
        """Whether the payment webhook came in time."""
        left = self.services.deadline - self.services.clock.now() - COMPENSATION_ALLOWANCE
        try:
            self.services.wait_for("payment.paid", timeout=max(0.0, left))
        except TimeoutError:
            return False
        return True

    def refund(self) -> str:
        try:
            self.services.retry(self.services.payment.refund, order_id=self.order_id, idempotency_key=f"{self.order_id}:refund")
        except OSError:
            return "failed"  # flagged for a person: the charge may still stand
        return "compensated"


class TimeoutWithoutCompensation(TimedOrderSaga):
    """Gives up when the payment webhook does not come in time and reports the order failed
    without refunding: the pending charge settles and the customer pays for nothing."""

    def payment_never_came(self) -> str:
        return "failed"


class WebhookWaitWithoutDeadline(TimedOrderSaga):
    """Waits for the payment webhook with no deadline: a webhook that is lost leaves the saga
    waiting for ever, and one that comes late is acted on long after the saga's deadline."""

    def await_payment(self) -> bool:
        self.services.wait_for("payment.paid")
        return True


class RetriesPastBudget(TimedOrderSaga):
    """Retries the charge in a loop of its own, six times, where the step's budget allows three
    retries: a payment provider that is down is hammered past what was agreed."""

    def charge(self) -> dict[str, Any] | None:
        for attempt in range(6):
            if attempt:
                self.services.clock.sleep(0.5 * 2**attempt)
            try:
                reply: dict[str, Any] = self.services.payment.charge(
                    order_id=self.order_id, amount=self.order["amount"], idempotency_key=f"{self.order_id}:charge"
                )
            except OSError:
                continue
            return reply
        return None


def _runner(saga_class: type[TimedOrderSaga]) -> Any:
    def run(services: Any, order: Any) -> str:
        return saga_class(services, order).run()

    return run


def timed_saga(name: str, saga_class: type[TimedOrderSaga], ref: str) -> Saga:
    return Saga(
        name,
        steps=TIMED_STEPS,
        participants=timed_participants,
        run=_runner(saga_class),
        input=TIMED_ORDER,
        deadline=DEADLINE,
        ref=ref,
    )
