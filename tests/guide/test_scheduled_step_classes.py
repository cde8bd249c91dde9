"""Guide, style 3: step classes driven by a scheduler. Each step is a class with ``run`` and
``compensate``; a scheduler keeps each saga's progress in a store and, on every ``run_due()``,
moves the sagas that are due one step on, rescheduling a failed step with back-off on the wall
clock (``time.time()``). A worker calls ``run_due()`` in a loop and sleeps between polls. Both
clocks run on the execution's virtual clock, so minutes of back-off cost nothing.

Adapter: start the saga in the scheduler, poll ``run_due()`` until it has an outcome."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import Any

import guide_shop as shop
import hypothesis
import pytest

import saga_verify
from saga_verify import Saga, current_services

Record = dict[str, Any]


# -- the library, in this style ----------------------------------------------------------------------
class SagaStep(ABC):
    name = ""

    @abstractmethod
    def run(self, record: Record) -> bool:
        """Do the step; False when its business refuses. Transport errors are retried later."""

    @abstractmethod
    def compensate(self, record: Record) -> None:
        """Undo what ``run`` did."""


class Scheduler:
    def __init__(self, steps: list[SagaStep], attempts: int = 3, backoff: float = 30.0) -> None:
        self.steps, self.attempts, self.backoff = steps, attempts, backoff
        self.store: dict[str, Record] = {}

    def start(self, saga_id: str, payload: dict[str, Any]) -> None:
        self.store[saga_id] = {"payload": payload, "forward": True, "index": 0, "attempt": 0, "due": time.time(), "outcome": None, "undone": True}

    def outcome(self, saga_id: str) -> str | None:
        outcome: str | None = self.store[saga_id]["outcome"]
        return outcome

    def run_due(self) -> None:
        now = time.time()
        for record in self.store.values():
            if record["outcome"] is None and record["due"] <= now:
                self._advance(record)

    def _advance(self, record: Record) -> None:
        step = self.steps[record["index"]]
        try:
            ok = step.run(record) if record["forward"] else (step.compensate(record) or True)
        except (ConnectionError, TimeoutError):
            record["attempt"] += 1
            if record["attempt"] < self.attempts:
                record["due"] = time.time() + self.backoff * record["attempt"]
                return
            ok = False
            if not record["forward"]:
                record["undone"] = False
        record["attempt"] = 0
        if record["forward"] and ok:
            record["index"] += 1
            if record["index"] == len(self.steps):
                record["outcome"] = "completed"
        elif record["forward"]:
            record["forward"] = False  # undo from the step that failed (it may have happened) back
        else:
            record["index"] -= 1
            if record["index"] < 0:
                record["outcome"] = "compensated" if record["undone"] else "failed"


# -- the user's step classes -----------------------------------------------------------------------
def _key(record: Record, what: str) -> str:
    return f"{record['payload']['order_id']}:{what}"


class Reserve(SagaStep):
    def run(self, record: Record) -> bool:
        p = record["payload"]
        return current_services().inventory.reserve(order_id=p["order_id"], sku=p["sku"], qty=p["qty"], idempotency_key=_key(record, "reserve"))["status"] == "ok"  # type: ignore[no-any-return]

    def compensate(self, record: Record) -> None:
        current_services().inventory.release(reserve_key=_key(record, "reserve"), idempotency_key=_key(record, "release"))


class Charge(SagaStep):
    def run(self, record: Record) -> bool:
        p = record["payload"]
        return current_services().payment.charge(order_id=p["order_id"], amount=p["amount"], idempotency_key=_key(record, "charge"))["status"] == "ok"  # type: ignore[no-any-return]

    def compensate(self, record: Record) -> None:
        current_services().payment.refund(charge_key=_key(record, "charge"), idempotency_key=_key(record, "refund"))


class Ship(SagaStep):
    def key(self, record: Record) -> str:
        return _key(record, "ship")

    def run(self, record: Record) -> bool:
        return current_services().shipping.create(order_id=record["payload"]["order_id"], idempotency_key=self.key(record))["status"] == "ok"  # type: ignore[no-any-return]

    def compensate(self, record: Record) -> None:
        current_services().shipping.cancel(create_key=self.key(record), idempotency_key=_key(record, "cancel"))


class ShipWithAFreshKeyPerAttempt(Ship):
    def key(self, record: Record) -> str:
        # The classic bug: each attempt is a new request to shipping, so a lost reply ships twice.
        return _key(record, f"ship-{record['attempt']}")


# -- the adapter -------------------------------------------------------------------------------------
def verified(name: str, steps: list[SagaStep]) -> Saga:
    def run(services: Any, order: dict[str, Any]) -> str:
        scheduler = Scheduler(steps)
        scheduler.start(order["order_id"], order)
        while (outcome := scheduler.outcome(order["order_id"])) is None:
            scheduler.run_due()
            time.sleep(5.0)  # the worker's polling interval
        return outcome

    return Saga(name, steps=shop.STEPS, participants=shop.participants, run=run, input=shop.ORDER)


order = verified("scheduled_steps", [Reserve(), Charge(), Ship()])
ships_twice = verified("scheduled_steps_fresh_key", [Reserve(), Charge(), ShipWithAFreshKeyPerAttempt()])


def test_the_scheduled_step_classes_hold(saga_verify: Any) -> None:
    result = saga_verify(order)
    assert result.ok
    assert result.sweep_complete


def test_a_fresh_key_per_attempt_is_caught() -> None:
    with pytest.raises(saga_verify.errors.SagaViolationError) as info:
        saga_verify.verify(ships_twice, settings=hypothesis.settings(database=None), report_dir=None)
    first = info.value.result.failures[0]
    assert (str(first.plan), first.invariants) == ("lose-reply at shipping.create#1", ("no_double_create",))
    # The retry came after the scheduler's back-off of 30 s, on the virtual clock.
    lost, retry = first.execution.trace[2], first.execution.trace[3]
    assert retry.time - lost.time >= 30.0
