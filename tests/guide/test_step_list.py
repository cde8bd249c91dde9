"""Guide, style 1: an async step list with a context dict. The library runs each step's action
with one dict that carries everything; when a step fails it runs the compensations back. Steps
retry with ``asyncio.sleep`` back-off, which runs on the execution's virtual clock.

Adapter: put ``services`` in the context, run the library, translate how it ended."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import guide_shop as shop
import hypothesis
import pytest

import saga_verify
from saga_verify import Saga

Context = dict[str, Any]
Action = Callable[[Context], Awaitable[None]]


# -- the library, in this style ----------------------------------------------------------------------
class StepFailed(Exception):
    """A step did not happen: refused, or every attempt failed."""


class SagaAborted(Exception):
    def __init__(self, compensated: bool) -> None:
        super().__init__("compensated" if compensated else "compensation failed")
        self.compensated = compensated


@dataclass
class SagaStep:
    action: Action
    compensation: Action


class StepSaga:
    def __init__(self, steps: list[SagaStep], attempts: int = 3, backoff: float = 0.5) -> None:
        self.steps, self.attempts, self.backoff = steps, attempts, backoff

    async def _with_retries(self, fn: Action, context: Context) -> None:
        for attempt in range(self.attempts):
            try:
                await fn(context)
                return
            except (ConnectionError, TimeoutError):
                await asyncio.sleep(self.backoff * 2**attempt)
        raise StepFailed(fn.__name__)

    async def execute(self, context: Context) -> Context:
        started: list[SagaStep] = []
        for step in self.steps:
            started.append(step)  # a step that failed may still have happened: it is undone too
            try:
                await self._with_retries(step.action, context)
            except StepFailed:
                compensated = True
                for done in reversed(started):
                    try:
                        await self._with_retries(done.compensation, context)
                    except StepFailed:
                        compensated = False
                raise SagaAborted(compensated) from None
        return context


# -- the user's steps --------------------------------------------------------------------------------
def _ok(reply: dict[str, Any]) -> None:
    if reply["status"] != "ok":
        raise StepFailed(reply.get("reason"))


async def reserve(ctx: Context) -> None:
    _ok(ctx["services"].inventory.reserve(order_id=ctx["order_id"], sku=ctx["sku"], qty=ctx["qty"], idempotency_key=f"{ctx['order_id']}:reserve"))


async def release(ctx: Context) -> None:
    _ok(ctx["services"].inventory.release(reserve_key=f"{ctx['order_id']}:reserve", idempotency_key=f"{ctx['order_id']}:release"))


async def charge(ctx: Context) -> None:
    _ok(ctx["services"].payment.charge(order_id=ctx["order_id"], amount=ctx["amount"], idempotency_key=f"{ctx['order_id']}:charge"))


async def charge_without_key(ctx: Context) -> None:
    # The classic bug: no idempotency key, so a retry after a lost reply charges again.
    _ok(ctx["services"].payment.charge(order_id=ctx["order_id"], amount=ctx["amount"]))


async def refund(ctx: Context) -> None:
    _ok(ctx["services"].payment.refund(charge_key=f"{ctx['order_id']}:charge", idempotency_key=f"{ctx['order_id']}:refund"))


async def ship(ctx: Context) -> None:
    _ok(ctx["services"].shipping.create(order_id=ctx["order_id"], idempotency_key=f"{ctx['order_id']}:ship"))


async def cancel(ctx: Context) -> None:
    _ok(ctx["services"].shipping.cancel(create_key=f"{ctx['order_id']}:ship", idempotency_key=f"{ctx['order_id']}:cancel"))


# -- the adapter -------------------------------------------------------------------------------------
def verified(name: str, library_saga: StepSaga) -> Saga:
    async def run(services: Any, order: dict[str, Any]) -> str:
        try:
            await library_saga.execute({"services": services, **order})
        except SagaAborted as aborted:
            return "compensated" if aborted.compensated else "failed"
        return "completed"

    return Saga(name, steps=shop.STEPS, participants=shop.participants, run=run, input=shop.ORDER)


order = verified("step_list", StepSaga([SagaStep(reserve, release), SagaStep(charge, refund), SagaStep(ship, cancel)]))
charges_without_key = verified(
    "step_list_charge_without_key", StepSaga([SagaStep(reserve, release), SagaStep(charge_without_key, refund), SagaStep(ship, cancel)])
)


def test_the_step_list_saga_holds(saga_verify: Any) -> None:
    result = saga_verify(order)
    assert result.ok
    assert result.sweep_complete


def test_a_charge_without_a_key_is_caught() -> None:
    with pytest.raises(saga_verify.errors.SagaViolationError) as info:
        saga_verify.verify(charges_without_key, settings=hypothesis.settings(database=None), report_dir=None)
    first = info.value.result.failures[0]
    assert (str(first.plan), first.invariants) == ("lose-reply at payment.charge#1", ("no_double_charge",))
