"""The reference saga system: the orchestrated order saga over idempotent participants, and broken
variants that each carry one classic bug. It shows the tool working and keeps it honest: the
search must find every broken variant and pass the correct saga."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from saga_verify import Actor, Durable, Execution, Saga, Step, invariant
from saga_verify.invariants import standard_invariants
from saga_verify.systems import Service, ServiceHandle, System

from . import _broken, _choreography_broken, _messaging_broken, _timed
from ._durable import IN_PROGRESS, LEASE_SECONDS, SUPERSEDED, DurableOrderSaga, recover_orders
from ._orchestrated import OrderSaga
from ._participants import Inventory, Notification, Payment, Shipping
from ._routes import ROUTES
from ._saga_log import Lease, LeaseLost, SagaLog, SqliteSagaLog
from ._saga_log_postgres import PostgresSagaLog

__all__ = [
    "IN_PROGRESS",
    "LAST_STOCK",
    "LEASE_SECONDS",
    "ORDER",
    "ORDER_2",
    "STEPS",
    "SUPERSEDED",
    "DurableOrderSaga",
    "Inventory",
    "Lease",
    "LeaseLost",
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
    "durable_order_redelivered",
    "durable_order_saga",
    "durable_order_takeover",
    "durable_two_orders",
    "durable_variants",
    "lease_is_live",
    "messaging_order_saga",
    "messaging_variants",
    "order_saga",
    "reference_http_system",
    "reference_system",
    "stock_never_sold_twice",
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


_client_module: Any = None


def _saga_services(services: Any) -> Any:
    """What the saga's code gets as ``services``: over HTTP, the order service's own client (the
    code its pacts come from); else the harness's services as they are."""
    global _client_module
    client = _client_module
    if client is None:
        # Imported on first use (it imports httpx), then kept: an import statement in the saga's
        # entry would cost every execution a module lookup.
        from . import _order_client as client

        _client_module = client
    return client.HttpServices(services) if client.over_http(services) else services


def _runner(saga_class: type[OrderSaga]) -> Callable[[Any, Any], str]:
    def run(services: Any, order: Any) -> str:
        return str(saga_class(_saga_services(services), order).run())

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


def lease_is_live(log: SagaLog, saga_id: str, now: float) -> bool:
    """Whether a coordinator still holds the order's lease: what makes an unfinished order owned."""
    held = log.lease(saga_id)
    return held is not None and held.expires > now


def _durable_saga(
    name: str,
    saga_class: type[DurableOrderSaga],
    attribute: str | None = None,
    actors: Callable[[Callable[[Any, Any], str]], tuple[Actor, ...]] | None = None,
) -> Saga:
    """A durable order saga; ``actors`` makes its other actors from its recovery."""

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
        durable=Durable(
            store=SqliteSagaLog, recover=recover, reopen=SqliteSagaLog.reopen, close=SqliteSagaLog.close, owned=lease_is_live
        ),
        actors=actors(recover) if actors is not None else (),
    )


#: The durable order saga: a write-ahead saga log, recovery after any coordinator crash.
durable_order_saga = _durable_saga("durable_order", DurableOrderSaga, attribute="durable_order_saga")
calls_before_intent = _durable_saga("calls_before_intent", _broken.CallsBeforeIntent)
fresh_keys_on_recovery = _durable_saga("fresh_keys_on_recovery", _broken.FreshKeysOnRecovery)
compensation_not_resumed = _durable_saga("compensation_not_resumed", _broken.CompensationNotResumed)

#: When a second coordinator takes an order over, and when a start command is delivered again:
#: after the first coordinator's lease expired (if it made no write since it began).
TAKEOVER_AT = 2 * LEASE_SECONDS


def _takeover(recover: Callable[[Any, Any], str]) -> tuple[Actor, ...]:
    return (Actor("takeover", input=ORDER, run=recover, start=TAKEOVER_AT),)


def _redelivered(recover: Callable[[Any, Any], str]) -> tuple[Actor, ...]:
    return (Actor("order-1 again", input=ORDER, start=TAKEOVER_AT),)


#: The durable order saga with a second coordinator that takes the order over once the first
#: one's lease expired (``switch`` faults decide how far the first got); it holds.
durable_order_takeover = _durable_saga("durable_order_takeover", DurableOrderSaga, actors=_takeover)
lease_without_fencing = _durable_saga("lease_without_fencing", _broken.LeaseWithoutFencing, actors=_takeover)
#: The durable order saga with its start command delivered again, after the order's lease
#: expired; it holds.
durable_order_redelivered = _durable_saga("durable_order_redelivered", DurableOrderSaga, actors=_redelivered)
duplicate_start_after_completion = _durable_saga(
    "duplicate_start_after_completion", _broken.DuplicateStartAfterCompletion, actors=_redelivered
)

#: A second order for the same stock; the inventory holds enough for one of the two.
ORDER_2 = {**ORDER, "order_id": "order-2"}
LAST_STOCK: dict[str, int] = {"sku-1": 2}  # one order's quantity (ORDER's qty)


@invariant(name="stock_never_sold_twice")
def stock_never_sold_twice(execution: Execution) -> list[str]:
    """Across every order of the execution, no more stock stays reserved than there was."""
    held: dict[str, float] = {}
    for row in execution.rows("inventory"):
        if row.action in ("reserve", "release"):
            held[row.correlation_id] = held.get(row.correlation_id, 0.0) + (row.amount if row.action == "reserve" else -row.amount)
    kept = {order: qty for order, qty in held.items() if qty > 0}
    if sum(kept.values()) <= sum(LAST_STOCK.values()):
        return []
    orders = ", ".join(f"{order} ({qty:g})" for order, qty in sorted(kept.items()))
    return [f"{sum(LAST_STOCK.values())} in stock, sold to {orders}"]


def _two_orders(name: str, saga_class: type[DurableOrderSaga], inventory: type[Inventory], attribute: str | None = None) -> Saga:
    """The durable saga placing two orders for the last of the stock at once (``sim`` only: its
    participants are plain objects, the inventory holding `LAST_STOCK`)."""
    durable = _durable_saga(name, saga_class, attribute, actors=lambda recover: (Actor("order-2", input=ORDER_2),))
    steps: tuple[Step, ...] = STEPS
    if inventory is not Inventory:
        steps = (*STEPS, Step("inventory", "available", depends_on=()))  # a question: no effect, no order

    def participants() -> dict[str, Any]:
        return {"inventory": inventory(dict(LAST_STOCK)), "payment": Payment(), "shipping": Shipping(), "notification": Notification()}

    saga = replace(durable, steps=steps, participants=participants)
    return replace(saga, invariants=(*standard_invariants(saga), stock_never_sold_twice))


#: Two orders for the last of the stock, reserved in one call each; it holds.
durable_two_orders = _two_orders("durable_two_orders", DurableOrderSaga, Inventory)
check_then_act_oversell = _two_orders("check_then_act_oversell", _broken.CheckThenReserve, _broken.TrustingInventory)


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
    crash shows; then those whose bug only another actor shows (``sim`` only), each judged
    against the correct saga with the same actors."""
    broken = (
        (calls_before_intent, _broken.CallsBeforeIntent),
        (fresh_keys_on_recovery, _broken.FreshKeysOnRecovery),
        (compensation_not_resumed, _broken.CompensationNotResumed),
    )
    among_actors = (
        (lease_without_fencing, _broken.LeaseWithoutFencing, durable_order_takeover),
        (duplicate_start_after_completion, _broken.DuplicateStartAfterCompletion, durable_order_redelivered),
        (check_then_act_oversell, _broken.CheckThenReserve, durable_two_orders),
    )
    sim = ("sim",)
    return (
        Variant(durable_order_saga, None, saga_class=DurableOrderSaga, kind="durable", correct=durable_order_saga),
        *(Variant(s, _bug(c), saga_class=c, kind="durable", correct=durable_order_saga) for s, c in broken),
        *(Variant(s, _bug(c), saga_class=c, kind="durable", runtimes=sim, correct=k) for s, c, k in among_actors),
    )
