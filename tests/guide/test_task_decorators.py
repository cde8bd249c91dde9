"""Guide, style 2: task decorators. Steps are plain functions registered once, at import, by a
decorator that names the task and its compensation; a runner calls them by name with the order
only. They reach their participants through ``saga_verify.current_services()``, and the runner's
back-off is ``time.sleep`` (bound by ``from time import sleep``), which runs on the execution's
virtual clock.

Adapter: run the workflow; the tasks find the services themselves."""

from __future__ import annotations

from collections.abc import Callable
from time import sleep
from typing import Any

import guide_shop as shop
import hypothesis
import pytest

import saga_verify
from saga_verify import Saga, current_services

Order = dict[str, Any]


# -- the library, in this style ----------------------------------------------------------------------
class TaskRefused(Exception):
    """The task's business said no: no retry."""


TASKS: dict[str, tuple[Callable[[Order], None], str | None]] = {}


def task(name: str, *, compensate: str | None = None) -> Callable[[Callable[[Order], None]], Callable[[Order], None]]:
    def register(fn: Callable[[Order], None]) -> Callable[[Order], None]:
        TASKS[name] = (fn, compensate)
        return fn

    return register


def _attempt(name: str, order: Order, attempts: int = 3, backoff: float = 1.0) -> bool:
    for attempt in range(attempts):
        try:
            TASKS[name][0](order)
            return True
        except TaskRefused:
            return False
        except (ConnectionError, TimeoutError):
            sleep(backoff * (attempt + 1))
    return False


def run_workflow(names: list[str], order: Order) -> str:
    started: list[str] = []
    for name in names:
        started.append(name)  # a task that failed may still have happened: it is undone too
        if not _attempt(name, order):
            undone = [_attempt(comp, order) for comp in (TASKS[n][1] for n in reversed(started)) if comp]
            return "compensated" if all(undone) else "failed"
    return "completed"


# -- the user's tasks, declared once at module level ------------------------------------------------
def _ok(reply: dict[str, Any]) -> None:
    if reply["status"] != "ok":
        raise TaskRefused(reply.get("reason"))


@task("reserve", compensate="release")
def reserve(order: Order) -> None:
    services = current_services()
    _ok(services.inventory.reserve(order_id=order["order_id"], sku=order["sku"], qty=order["qty"], idempotency_key=f"{order['order_id']}:reserve"))


@task("release")
def release(order: Order) -> None:
    _ok(current_services().inventory.release(reserve_key=f"{order['order_id']}:reserve", idempotency_key=f"{order['order_id']}:release"))


@task("charge", compensate="refund")
def charge(order: Order) -> None:
    _ok(current_services().payment.charge(order_id=order["order_id"], amount=order["amount"], idempotency_key=f"{order['order_id']}:charge"))


@task("refund")
def refund(order: Order) -> None:
    _ok(current_services().payment.refund(charge_key=f"{order['order_id']}:charge", idempotency_key=f"{order['order_id']}:refund"))


@task("refund_quietly")
def refund_quietly(order: Order) -> None:
    # The classic bug: a refund that could not be made is swallowed, and the saga says it undid everything.
    try:
        refund(order)
    except (ConnectionError, TimeoutError):
        pass


@task("charge_refunded_quietly", compensate="refund_quietly")
def charge_refunded_quietly(order: Order) -> None:
    charge(order)


@task("ship", compensate="cancel")
def ship(order: Order) -> None:
    _ok(current_services().shipping.create(order_id=order["order_id"], idempotency_key=f"{order['order_id']}:ship"))


@task("cancel")
def cancel(order: Order) -> None:
    _ok(current_services().shipping.cancel(create_key=f"{order['order_id']}:ship", idempotency_key=f"{order['order_id']}:cancel"))


# -- the adapter -------------------------------------------------------------------------------------
def verified(name: str, workflow: list[str]) -> Saga:
    return Saga(name, steps=shop.STEPS, participants=shop.participants, run=lambda services, order: run_workflow(workflow, order), input=shop.ORDER)


order = verified("task_decorators", ["reserve", "charge", "ship"])
swallows_refund_errors = verified("task_decorators_swallowed_refund", ["reserve", "charge_refunded_quietly", "ship"])


def test_the_decorated_tasks_hold(saga_verify: Any) -> None:
    result = saga_verify(order)
    assert result.ok
    assert result.sweep_complete


def test_a_swallowed_refund_error_is_caught() -> None:
    with pytest.raises(saga_verify.errors.SagaViolationError) as info:
        saga_verify.verify(swallows_refund_errors, settings=hypothesis.settings(database=None), report_dir=None)
    first = info.value.result.failures[0]
    assert first.invariants == ("full_compensation",)
    assert str(first.plan) == "refuse at shipping.create#1; fail at payment.refund#1"
