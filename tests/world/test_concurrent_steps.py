"""Steps a saga runs concurrently (asyncio.gather), as libraries run independent steps: the
world runs them deterministically on its virtual clock, forward_order checks that a step took
effect only after the steps it depends on, and reverse_compensation_order leaves independent
steps free to be undone in any order."""

from __future__ import annotations

import asyncio
from typing import Any

import hypothesis

from saga_verify import FaultPlan, Ledger, Saga, Step, explore, run_plan
from saga_verify._world import trace_to_json
from saga_verify.faults import DeliveryPoint, Refuse

ORDER = {"order_id": "o-1"}


class Service:
    """A participant whose calls take ``latency`` virtual seconds and are idempotent by key."""

    latency = 0.1

    def __init__(self) -> None:
        self.ledger = Ledger()
        self.done: dict[str, str] = {}
        self.undone: set[str] = set()
        self.refusing = False

    def refuse_next(self) -> None:
        self.refusing = True

    async def _do(self, action: str, key: str) -> dict[str, str]:
        await asyncio.sleep(self.latency)
        if self.refusing:
            self.refusing = False
            return {"status": "refused"}
        if key in self.undone:
            return {"status": "refused"}
        if key not in self.done:
            self.done[key] = action
            self.ledger.record(action)
        return {"status": "ok"}

    async def _undo(self, compensation: str, key: str) -> dict[str, str]:
        await asyncio.sleep(self.latency)
        if key not in self.undone:
            self.undone.add(key)
            if key in self.done:
                self.ledger.record(compensation)
        return {"status": "ok"}


class Inventory(Service):
    latency = 0.05

    async def reserve(self, idempotency_key: str) -> dict[str, str]:
        return await self._do("reserve", idempotency_key)

    async def release(self, idempotency_key: str) -> dict[str, str]:
        return await self._undo("release", idempotency_key)


class Payment(Service):
    latency = 0.3

    async def charge(self, idempotency_key: str) -> dict[str, str]:
        return await self._do("charge", idempotency_key)

    async def refund(self, idempotency_key: str) -> dict[str, str]:
        return await self._undo("refund", idempotency_key)


class Shipping(Service):
    async def create(self, idempotency_key: str) -> dict[str, str]:
        return await self._do("create", idempotency_key)

    async def cancel(self, idempotency_key: str) -> dict[str, str]:
        return await self._undo("cancel", idempotency_key)


STEPS = [
    Step("inventory", "reserve", "release", depends_on=()),
    Step("payment", "charge", "refund", depends_on=(), refuse=Payment.refuse_next),
    Step("shipping", "create", "cancel", depends_on=("inventory.reserve", "payment.charge"), refuse=Shipping.refuse_next),
]


async def _call(fn: Any, key: str) -> bool:
    for _ in range(3):
        try:
            return (await fn(idempotency_key=key))["status"] == "ok"  # type: ignore[no-any-return]
        except ConnectionError:
            await asyncio.sleep(0.2)
        except TimeoutError:
            return False
    return False


async def _undo_all(services: Any) -> str:
    # Independent steps are undone concurrently, in no particular order.
    undone = await asyncio.gather(
        _call(services.shipping.cancel, "o-1:ship"),
        _call(services.payment.refund, "o-1:charge"),
        _call(services.inventory.release, "o-1:reserve"),
    )
    return "compensated" if all(undone) else "failed"


async def reserve_and_charge_then_ship(services: Any, order: Any) -> str:
    reserved, charged = await asyncio.gather(
        _call(services.inventory.reserve, "o-1:reserve"), _call(services.payment.charge, "o-1:charge")
    )
    if not (reserved and charged and await _call(services.shipping.create, "o-1:ship")):
        return await _undo_all(services)
    return "completed"


async def ships_before_it_is_paid(services: Any, order: Any) -> str:
    # The bug: shipping, which needs the charge, runs alongside it.
    done = await asyncio.gather(
        _call(services.inventory.reserve, "o-1:reserve"),
        _call(services.payment.charge, "o-1:charge"),
        _call(services.shipping.create, "o-1:ship"),
    )
    return "completed" if all(done) else await _undo_all(services)


def _saga(name: str, run: Any) -> Saga:
    return Saga(
        name,
        steps=STEPS,
        participants=lambda: {"inventory": Inventory(), "payment": Payment(), "shipping": Shipping()},
        run=run,
        input=ORDER,
    )


def _no_db() -> hypothesis.settings:
    return hypothesis.settings(database=None)


def test_concurrent_steps_interleave_on_the_virtual_clock_the_same_way_every_time() -> None:
    saga = _saga("concurrent", reserve_and_charge_then_ship)
    runs = [run_plan(saga) for _ in range(3)]
    assert len({trace_to_json(r.trace) for r in runs}) == 1
    execution = runs[0]
    assert execution.status == "completed"
    # Both started at once; the reservation (0.05 s) took effect before the charge (0.3 s).
    assert [e.point for e in execution.trace] == ["inventory.reserve#1", "payment.charge#1", "shipping.create#1"]
    assert [r.action for r in execution.rows()] == ["reserve", "charge", "create"]
    reserve, charge, create = execution.rows()
    assert create.time > charge.time > reserve.time
    assert reserve.delivery == 0
    assert charge.delivery == 1


def test_a_correct_concurrent_saga_holds_and_its_search_is_repeatable() -> None:
    saga = _saga("concurrent", reserve_and_charge_then_ship)
    first = explore(saga, settings=_no_db(), report_dir=None, max_examples=100)
    assert first.ok, first
    again = explore(saga, settings=_no_db(), report_dir=None, max_examples=100)
    assert (again.executions, again.sweep_executions) == (first.executions, first.sweep_executions)


def test_compensating_independent_steps_in_any_order_is_no_violation() -> None:
    saga = _saga("concurrent", reserve_and_charge_then_ship)
    execution = run_plan(saga, FaultPlan((Refuse(DeliveryPoint("shipping", "create", 1)),)))
    assert execution.status == "compensated"
    # The refund (0.3 s) lands after the release (0.05 s): not reverse step order, and it need not be.
    assert [r.action for r in execution.rows()][-2:] == ["release", "refund"]
    result = explore(saga, settings=_no_db(), report_dir=None, max_examples=0)
    assert result.ok


def test_forward_order_catches_a_step_run_alongside_what_it_depends_on() -> None:
    result = explore(_saga("ships_unpaid", ships_before_it_is_paid), settings=_no_db(), report_dir=None, max_examples=0)
    failure = result.failures[0]
    assert failure.found_by == "baseline"
    assert failure.invariants == ("forward_order",)
    (violation,) = failure.violations
    assert violation.message == "shipping.create took effect for o-1 before payment.charge, which it depends on"
