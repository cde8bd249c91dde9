"""Guide, style 4: steps run in an asyncio task. The library hands the saga to an orchestrator,
which runs the steps in a task of its own and resolves a future with the outcome; the caller
awaits the future. Retries wait with ``asyncio.sleep`` on the execution's virtual clock. When a
budget is spent the harness refuses the saga's calls and stops its event loop from outside, so a
saga that never ends is reported, never waited for.

Adapter: submit, and await what the orchestrator answers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import guide_shop as shop
import hypothesis
import pytest

import saga_verify
from saga_verify import Saga

Call = Callable[[Any, dict[str, Any]], dict[str, Any]]


# -- the library, in this style ----------------------------------------------------------------------
class Orchestrator:
    def __init__(self, attempts: int | None = 3, backoff: float = 1.0) -> None:
        #: None: retry until it works.
        self.attempts, self.backoff = attempts, backoff

    def submit(self, steps: list[tuple[Call, Call]], services: Any, order: dict[str, Any]) -> asyncio.Future[str]:
        outcome: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        async def worker() -> None:
            try:
                outcome.set_result(await self._run(steps, services, order))
            except Exception as exc:
                outcome.set_exception(exc)

        asyncio.get_running_loop().create_task(worker())
        return outcome

    async def _call(self, call: Call, services: Any, order: dict[str, Any]) -> bool:
        attempt = 0
        while self.attempts is None or attempt < self.attempts:
            try:
                return call(services, order)["status"] == "ok"
            except (ConnectionError, TimeoutError):
                attempt += 1
                await asyncio.sleep(self.backoff * min(attempt, 8))
        return False

    async def _run(self, steps: list[tuple[Call, Call]], services: Any, order: dict[str, Any]) -> str:
        started: list[Call] = []
        for action, compensation in steps:
            started.append(compensation)  # a step that failed may still have happened: it is undone too
            if not await self._call(action, services, order):
                undone = [await self._call(comp, services, order) for comp in reversed(started)]
                return "compensated" if all(undone) else "failed"
        return "completed"


# -- the user's steps --------------------------------------------------------------------------------
def _key(order: dict[str, Any], what: str) -> str:
    return f"{order['order_id']}:{what}"


STEPS: list[tuple[Call, Call]] = [
    (
        lambda s, o: s.inventory.reserve(order_id=o["order_id"], sku=o["sku"], qty=o["qty"], idempotency_key=_key(o, "reserve")),
        lambda s, o: s.inventory.release(reserve_key=_key(o, "reserve"), idempotency_key=_key(o, "release")),
    ),
    (
        lambda s, o: s.payment.charge(order_id=o["order_id"], amount=o["amount"], idempotency_key=_key(o, "charge")),
        lambda s, o: s.payment.refund(charge_key=_key(o, "charge"), idempotency_key=_key(o, "refund")),
    ),
    (
        lambda s, o: s.shipping.create(order_id=o["order_id"], idempotency_key=_key(o, "ship")),
        lambda s, o: s.shipping.cancel(create_key=_key(o, "ship"), idempotency_key=_key(o, "cancel")),
    ),
]


# -- the adapter -------------------------------------------------------------------------------------
def verified(name: str, orchestrator: Orchestrator) -> Saga:
    async def run(services: Any, order: dict[str, Any]) -> str:
        return await orchestrator.submit(STEPS, services, order)

    return Saga(name, steps=shop.STEPS, participants=shop.participants, run=run, input=shop.ORDER)


order = verified("steps_in_a_task", Orchestrator(attempts=3))
retries_forever = verified("steps_in_a_task_retry_forever", Orchestrator(attempts=None))


def test_the_steps_run_in_a_task_hold(saga_verify: Any) -> None:
    result = saga_verify(order)
    assert result.ok
    assert result.sweep_complete


def test_retrying_forever_in_a_task_is_caught_as_not_terminating() -> None:
    with pytest.raises(saga_verify.errors.SagaViolationError) as info:
        saga_verify.verify(retries_forever, settings=hypothesis.settings(database=None), report_dir=None)
    first = info.value.result.failures[0]
    assert (str(first.plan), first.invariants) == ("outage at inventory.reserve#1", ("terminates",))
    assert first.execution.halted == "made more than 200 calls"
