"""Steps declared at module level (task decorators, step classes a library instantiates) reach the
execution they run in through saga_verify.current_services()."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import saga_verify
from saga_verify import Ledger, Saga, Step, run_plan
from saga_verify.errors import SagaDefinitionError


class Payment:
    def __init__(self) -> None:
        self.ledger = Ledger()

    def charge(self, amount: int, idempotency_key: str) -> str:
        self.ledger.record("charge", amount)
        return "ok"

    def refund(self, amount: int, idempotency_key: str) -> str:
        self.ledger.record("refund", amount)
        return "ok"


def charge_step(order: dict[str, Any]) -> str:
    """A step declared once, at module level: it is handed the order, not the services."""
    payment = saga_verify.current_services().payment
    result: str = payment.charge(amount=order["amount"], idempotency_key=f"{order['order_id']}:charge")
    return result


def _saga(run: Any) -> Saga:
    return Saga("module-steps", steps=[Step("payment", "charge", "refund")], participants=lambda: {"payment": Payment()}, run=run, input={"order_id": "o-1", "amount": 5})


def test_a_module_level_step_reaches_the_services_of_its_execution() -> None:
    seen = []

    def run(services: Any, order: Any) -> str:
        seen.append(saga_verify.current_services() is services)
        charge_step(order)
        return "completed"

    first, second = run_plan(_saga(run)), run_plan(_saga(run))
    assert seen == [True, True]
    assert len(first.rows("payment", "charge")) == len(second.rows("payment", "charge")) == 1
    assert first.participants["payment"] is not second.participants["payment"]


def test_tasks_the_saga_starts_reach_it_too() -> None:
    async def run(services: Any, order: Any) -> str:
        await asyncio.gather(asyncio.to_thread(charge_step, order), asyncio.create_task(asyncio.sleep(0)))
        return "completed"

    execution = run_plan(_saga(run))
    assert execution.status == "completed"
    assert len(execution.rows("payment", "charge")) == 1


def test_outside_an_execution_it_says_so() -> None:
    with pytest.raises(SagaDefinitionError, match=r"current_services\(\) was called outside a saga execution"):
        saga_verify.current_services()
