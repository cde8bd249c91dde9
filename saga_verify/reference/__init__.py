"""The reference saga system: the orchestrated order saga over idempotent participants, and broken
variants that each carry one classic bug. It shows the tool working and keeps it honest: the
search must find every broken variant and pass the correct saga."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from saga_verify import Durable, Saga, Step
from saga_verify.systems import Service, ServiceHandle, System

from . import _broken, _choreography_broken, _messaging_broken, _timed
from ._durable import DurableOrderSaga, recover_orders
from ._orchestrated import OrderSaga
from ._participants import Inventory, Notification, Payment, Shipping
from ._routes import ROUTES
from ._saga_log import SagaLog, SqliteSagaLog
from ._saga_log_postgres import PostgresSagaLog

__all__ = [
    "ORDER",
    "STEPS",
    "DurableOrderSaga",
    "Inventory",
    "Notification",
    "OrderSaga",
    "Payment",
    "PostgresSagaLog",
    "SagaLog",
    "Shipping",
    "SqliteSagaLog",
    "Variant",
    "choreographed_order_saga",
    "choreographed_variants",
    "durable_order_saga",
    "durable_variants",
    "messaging_order_saga",
    "messaging_variants",
    "order_saga",
    "reference_http_system",
    "reference_system",
    "timed_order_saga",
    "variants",
]

#: The order every reference execution places.
ORDER = {"order_id": "order-1", "sku": "sku-1", "qty": 2, "amount": 100}


def _refuse_next(participant: Any) -> None:
    """The refuse fault's hook: arm the participant's own business refusal (in its test build,
    over HTTP)."""
    if isinstance(participant, ServiceHandle):
        participant.post("/_inspect/refuse-next")
    else:
        participant.refuse_next()


def _restart(participant: Any) -> None:
    """The crash fault's hook: the participant dies and comes back from what its store keeps. In
    a container its process is killed for real and its supervisor starts another from the store;
    elsewhere it is rebuilt from the saved form in its own process."""
    if not isinstance(participant, ServiceHandle):
        participant.restart()
    elif participant.runtime == "container":
        participant.crash("/_inspect/crash")
    else:
        participant.post("/_inspect/restart")


STEPS = (
    Step("inventory", "reserve", compensation="release", refuse=_refuse_next, restart=_restart),
    Step("payment", "charge", compensation="refund", refuse=_refuse_next, restart=_restart),
    Step("shipping", "create", compensation="cancel", refuse=_refuse_next, restart=_restart),
    Step("notification", "send", restart=_restart),
)


def _service_image() -> str:
    from saga_verify.containers import ensure_service_image

    return ensure_service_image().tag


def _app_factory(name: str, cls: type) -> Callable[[], Any]:
    def create() -> Any:
        from .services import create_app

        return create_app(name, participant=cls(), inspect=True)

    return create


_services: dict[tuple[str, type], Service] = {}


def _service(name: str, cls: type) -> Service:
    """One reference service serving participants of ``cls``: the same object for every saga
    that needs it, so that every runtime starts it once for all of them."""
    found = _services.get((name, cls))
    if found is None:
        correct = cls in (Inventory, Payment, Shipping, Notification)
        chosen = [] if correct else ["--participant", f"{cls.__module__}:{cls.__qualname__}"]
        serve = [sys.executable, "-m", "saga_verify.reference.services", "--service", name, *chosen]
        found = Service(
            name,
            routes=ROUTES[name],
            model=cls,
            app=_app_factory(name, cls),
            command=[*serve, "--host", "{host}", "--port", "{port}", "--inspect", "--parent-pid", "{parent_pid}"],
            image=_service_image,
            # Supervised, with a store: a crash kills the service's process and its supervisor
            # starts another from the store at once (a container restart takes a second). A killed
            # service loses nothing its store saved; no fsync per request.
            container_command=[
                "--service", name, *chosen, "--host", "0.0.0.0", "--port", "8000", "--inspect", "--supervise",
                "--store", f"/data/{name}.sqlite", "--store-sync", "normal",
            ],
        )
        _services[(name, cls)] = found
    return found


def reference_system(payment: type[Payment] = Payment) -> System:
    """The four reference services (with ``payment`` serving participants of that class)."""
    return System(
        _service("inventory", Inventory),
        _service("payment", payment),
        _service("shipping", Shipping),
        _service("notification", Notification),
    )


_http_services: dict[tuple[str, type], Service] = {}


def _http_service(name: str, cls: type) -> Service:
    """The reference service without its Python model: reached over HTTP on every runtime (under
    ``sim`` its app runs in this process, over the simulated participant)."""
    found = _http_services.get((name, cls))
    if found is None:
        found = _http_services[(name, cls)] = replace(_service(name, cls), model=None)
    return found


def reference_http_system(payment: type[Payment] = Payment) -> System:
    """The four reference services, each reached over HTTP on every runtime: for a saga that
    speaks HTTP itself, such as the Arazzo order workflow (contracts/arazzo/order.arazzo.yaml)."""
    return System(
        _http_service("inventory", Inventory),
        _http_service("payment", payment),
        _http_service("shipping", Shipping),
        _http_service("notification", Notification),
    )


def _runner(saga_class: type[OrderSaga]) -> Callable[[Any, Any], str]:
    def run(services: Any, order: Any) -> str:
        from ._order_client import HttpServices, over_http

        # Over HTTP the saga runs on the order service's own client, the code its pacts come from.
        return str(saga_class(HttpServices(services) if over_http(services) else services, order).run())

    return run


def _saga(name: str, saga_class: type[OrderSaga] = OrderSaga, payment: type[Payment] = Payment, attribute: str | None = None) -> Saga:
    return Saga(
        name,
        steps=STEPS,
        participants=reference_system(payment),
        run=_runner(saga_class),
        input=ORDER,
        ref=f"{__name__}:{attribute or name}",
    )


#: The correct orchestrated order saga: holds every invariant under every plan.
order_saga = _saga("order", attribute="order_saga")

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


#: The correct timed order saga (`_timed`): a payment webhook awaited with a deadline, retries
#: within budget; it holds every invariant, those about time included, under every plan.
timed_order_saga = _timed.timed_saga("timed_order", _timed.TimedOrderSaga, f"{__name__}:timed_order_saga")
timeout_without_compensation = _timed.timed_saga(
    "timeout_without_compensation", _timed.TimeoutWithoutCompensation, f"{__name__}:timeout_without_compensation"
)
webhook_wait_without_deadline = _timed.timed_saga(
    "webhook_wait_without_deadline", _timed.WebhookWaitWithoutDeadline, f"{__name__}:webhook_wait_without_deadline"
)
retries_past_budget = _timed.timed_saga("retries_past_budget", _timed.RetriesPastBudget, f"{__name__}:retries_past_budget")


def _saga_services(services: Any) -> Any:
    from ._order_client import HttpServices, over_http

    return HttpServices(services) if over_http(services) else services


def _durable_saga(name: str, saga_class: type[DurableOrderSaga], attribute: str | None = None) -> Saga:
    def run(services: Any, order: Any) -> str:
        return str(saga_class(_saga_services(services), order).run())

    def recover(services: Any, order: Any) -> str:
        return recover_orders(saga_class, _saga_services(services), order)

    return Saga(
        name,
        steps=STEPS,
        participants=reference_system(),
        run=run,
        input=ORDER,
        ref=f"{__name__}:{attribute or name}",
        # The log in an SQLite database in memory, kept across a coordinator crash as a database
        # server outlives its client: thousands of executions a second, no files to clean up.
        durable=Durable(store=SqliteSagaLog, recover=recover, reopen=SqliteSagaLog.reopen, close=SqliteSagaLog.close),
    )


#: The durable order saga: a write-ahead saga log, recovery after any coordinator crash.
durable_order_saga = _durable_saga("durable_order", DurableOrderSaga, attribute="durable_order_saga")
calls_before_intent = _durable_saga("calls_before_intent", _broken.CallsBeforeIntent)
fresh_keys_on_recovery = _durable_saga("fresh_keys_on_recovery", _broken.FreshKeysOnRecovery)
compensation_not_resumed = _durable_saga("compensation_not_resumed", _broken.CompensationNotResumed)


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
    runtimes: tuple[str, ...] = ("sim", "asgi", "process", "container")
    """Where its participants can run (the timed sagas' are plain objects: ``sim`` only)."""
    correct: Saga | None = None
    """The correct saga of its kind, which must hold under this variant's plans (None: the
    orchestrated order saga)."""

    @property
    def name(self) -> str:
        return self.saga.name

    @property
    def broken(self) -> bool:
        return self.bug is not None


def _bug(cls: type) -> str:
    return " ".join((cls.__doc__ or "").split())


def variants() -> tuple[Variant, ...]:
    """The correct saga first, then every broken variant; then the timed sagas (``kind`` durable,
    ``sim`` only), the correct one first."""
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
        *_timed_variants(),
    )


def _timed_variants() -> tuple[Variant, ...]:
    timed = (
        (timeout_without_compensation, _timed.TimeoutWithoutCompensation),
        (webhook_wait_without_deadline, _timed.WebhookWaitWithoutDeadline),
        (retries_past_budget, _timed.RetriesPastBudget),
    )
    sim = ("sim",)
    return (
        Variant(timed_order_saga, None, kind="durable", runtimes=sim, correct=timed_order_saga),
        *(Variant(s, _bug(c), kind="durable", runtimes=sim, correct=timed_order_saga) for s, c in timed),
    )


#: The choreographed order saga (`_choreographed`): no coordinator, services reacting to events
#: on an at-least-once bus; it holds every invariant of a choreography and of the order.
choreographed_order_saga = _choreography_broken.correct.saga
non_idempotent_consumer = _choreography_broken.non_idempotent_consumer.saga
order_assuming_consumer = _choreography_broken.order_assuming_consumer.saga
dual_write_publish = _choreography_broken.dual_write_publish.saga
missing_compensation_handler = _choreography_broken.missing_compensation_handler.saga
poison_blocks_queue = _choreography_broken.poison_blocks_queue.saga
correlation_dropped = _choreography_broken.correlation_dropped.saga
ack_before_commit = _choreography_broken.ack_before_commit.saga


def choreographed_variants() -> tuple[Variant, ...]:
    """The choreographed saga first, then its broken variants (``kind`` choreographed; their
    services are plain objects on the simulated bus: ``sim`` only)."""
    sim = ("sim",)
    correct = choreographed_order_saga
    return (
        Variant(correct, None, kind="choreographed", runtimes=sim, correct=correct),
        *(Variant(c.saga, _bug(cls), kind="choreographed", runtimes=sim, correct=correct) for c, cls in _choreography_broken.BROKEN),
    )


#: The order saga orchestrated by messaging (`_messaging`): an orchestrator that sends commands on
#: the bus and waits for the correlated replies under its own deadline; it holds every invariant of
#: a choreography and of the order, with replies delivered twice and late.
messaging_order_saga = _messaging_broken.correct.saga
reply_not_deduplicated = _messaging_broken.reply_not_deduplicated.saga
timeout_forgets_step = _messaging_broken.timeout_forgets_step.saga
late_reply_resumes = _messaging_broken.late_reply_resumes.saga


def messaging_variants() -> tuple[Variant, ...]:
    """The messaging order saga first, then its broken variants (``kind`` messaging: orchestrated,
    but by commands and replies on the bus; plain objects on the simulated bus: ``sim`` only)."""
    sim = ("sim",)
    correct = messaging_order_saga
    return (
        Variant(correct, None, kind="messaging", runtimes=sim, correct=correct),
        *(Variant(c.saga, _bug(cls), kind="messaging", runtimes=sim, correct=correct) for c, cls in _messaging_broken.BROKEN),
    )


def durable_variants() -> tuple[Variant, ...]:
    """The correct durable saga first, then the durable variants whose bug only a coordinator
    crash shows."""
    broken = (
        (calls_before_intent, _broken.CallsBeforeIntent),
        (fresh_keys_on_recovery, _broken.FreshKeysOnRecovery),
        (compensation_not_resumed, _broken.CompensationNotResumed),
    )
    return (
        Variant(durable_order_saga, None, saga_class=DurableOrderSaga, kind="durable", correct=durable_order_saga),
        *(Variant(s, _bug(c), saga_class=c, kind="durable", correct=durable_order_saga) for s, c in broken),
    )
