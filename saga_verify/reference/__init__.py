"""The reference saga system: the orchestrated order saga over idempotent participants, and broken
variants that each carry one classic bug. It shows the tool working and keeps it honest: the
search must find every broken variant and pass the correct saga."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from saga_verify import Saga, Step

from . import _broken
from ._orchestrated import OrderSaga
from ._participants import Inventory, Notification, Payment, Shipping

__all__ = [
    "ORDER",
    "STEPS",
    "Inventory",
    "Notification",
    "OrderSaga",
    "Payment",
    "Shipping",
    "Variant",
    "order_saga",
    "variants",
]

#: The order every reference execution places.
ORDER = {"order_id": "order-1", "sku": "sku-1", "qty": 2, "amount": 100}

STEPS = (
    Step("inventory", "reserve", compensation="release", refuse=Inventory.refuse_next, restart=Inventory.restart),
    Step("payment", "charge", compensation="refund", refuse=Payment.refuse_next, restart=Payment.restart),
    Step("shipping", "create", compensation="cancel", refuse=Shipping.refuse_next, restart=Shipping.restart),
    Step("notification", "send", restart=Notification.restart),
)


def _participants(payment: type[Payment] = Payment) -> Callable[[], dict[str, object]]:
    def make() -> dict[str, object]:
        return {"inventory": Inventory(), "payment": payment(), "shipping": Shipping(), "notification": Notification()}

    make.__module__ = __name__
    return make


def _runner(saga_class: type[OrderSaga]) -> Callable[[Any, Any], str]:
    def run(services: Any, order: Any) -> str:
        return saga_class(services, order).run()

    run.__module__ = __name__
    run.__qualname__ = f"run_{saga_class.__name__}"
    return run


def _saga(name: str, saga_class: type[OrderSaga] = OrderSaga, payment: type[Payment] = Payment) -> Saga:
    return Saga(name, steps=STEPS, participants=_participants(payment), run=_runner(saga_class), input=ORDER)


#: The correct orchestrated order saga: holds every invariant under every plan.
order_saga = _saga("order")

charge_without_key = _saga("charge_without_key", _broken.ChargeWithoutKey)
fresh_key_on_retry = _saga("fresh_key_on_retry", _broken.FreshKeyOnRetry)
lost_reply_not_compensated = _saga("lost_reply_not_compensated", _broken.LostReplyNotCompensated)
forward_order_compensation = _saga("forward_order_compensation", _broken.ForwardOrderCompensation)
notify_before_pivot = _saga("notify_before_pivot", _broken.NotifyBeforePivot)
swallowed_compensation_error = _saga("swallowed_compensation_error", _broken.SwallowedCompensationError)
unbounded_retry = _saga("unbounded_retry", _broken.UnboundedRetry)
decline_treated_as_success = _saga("decline_treated_as_success", _broken.DeclineTreatedAsSuccess)
non_idempotent_refund = _saga("non_idempotent_refund", payment=_broken.NonIdempotentRefund)
refund_forgets_charge = _saga("refund_forgets_charge", payment=_broken.RefundForgetsCharge)
volatile_dedupe = _saga("volatile_dedupe", payment=_broken.VolatileDedupePayment)


@dataclass(frozen=True)
class Variant:
    """A reference saga and, for a broken one, the bug it carries."""

    saga: Saga
    bug: str | None
    """One line naming the bug; None for the correct saga."""
    saga_class: type[OrderSaga] = OrderSaga
    """The saga's code (a broken variant overrides one method)."""
    payment_class: type[Payment] = Payment
    """The payment participant (a broken variant may serve a broken one)."""
    kind: str = "orchestrated"

    @property
    def name(self) -> str:
        return self.saga.name

    @property
    def broken(self) -> bool:
        return self.bug is not None


def _bug(cls: type) -> str:
    return " ".join((cls.__doc__ or "").split())


def variants() -> tuple[Variant, ...]:
    """The correct saga first, then every broken variant."""
    sagas = (
        (charge_without_key, _broken.ChargeWithoutKey),
        (fresh_key_on_retry, _broken.FreshKeyOnRetry),
        (lost_reply_not_compensated, _broken.LostReplyNotCompensated),
        (forward_order_compensation, _broken.ForwardOrderCompensation),
        (notify_before_pivot, _broken.NotifyBeforePivot),
        (swallowed_compensation_error, _broken.SwallowedCompensationError),
        (unbounded_retry, _broken.UnboundedRetry),
        (decline_treated_as_success, _broken.DeclineTreatedAsSuccess),
    )
    participants = (
        (non_idempotent_refund, _broken.NonIdempotentRefund),
        (refund_forgets_charge, _broken.RefundForgetsCharge),
        (volatile_dedupe, _broken.VolatileDedupePayment),
    )
    return (
        Variant(order_saga, None),
        *(Variant(s, _bug(c), saga_class=c) for s, c in sagas),
        *(Variant(s, _bug(c), payment_class=c) for s, c in participants),
    )
