"""Before searching, the saga runs twice with no faults; what goes wrong there is said plainly,
and executions that are not independent (state kept from one to the next) are named as such."""

from __future__ import annotations

from typing import Any

import hypothesis
import pytest

from saga_verify import Ledger, Saga, Step, explore
from saga_verify.errors import NondeterminismError, SagaDefinitionError

STEPS = [Step("payment", "charge", "refund")]


class Payment:
    def __init__(self) -> None:
        self.ledger = Ledger()

    def charge(self, amount: int, idempotency_key: str) -> str:
        self.ledger.record("charge", amount)
        return "ok"

    def refund(self, amount: int, idempotency_key: str) -> str:
        self.ledger.record("refund", amount)
        return "ok"


class CircuitBreaker:
    """Process-wide, as some saga libraries keep one: after three failed calls it opens, and
    the library skips the call and answers None."""

    failures = 0

    def call(self, fn: Any, **request: Any) -> Any:
        if CircuitBreaker.failures >= 3:
            return None
        try:
            return fn(**request)
        except ConnectionError:
            CircuitBreaker.failures += 1
            raise


BREAKER = CircuitBreaker()


def _behind_the_breaker(services: Any, order: Any) -> Any:
    try:
        reply = BREAKER.call(services.payment.charge, amount=100, idempotency_key="k")
    except (ConnectionError, TimeoutError):
        return "failed"
    return None if reply is None else "completed"


def _saga(name: str) -> Saga:
    return Saga(name, steps=STEPS, participants=lambda: {"payment": Payment()}, run=_behind_the_breaker, input={"order_id": "o-1"})


def _no_db() -> hypothesis.settings:
    return hypothesis.settings(database=None)


@pytest.fixture
def closed_breaker():
    CircuitBreaker.failures = 0
    yield
    CircuitBreaker.failures = 0


@pytest.mark.usefixtures("closed_breaker")
def test_state_kept_between_searches_of_one_saga_is_named() -> None:
    saga = _saga("breaker")
    # The first search sees its executions change under it once the breaker opens.
    with pytest.raises(NondeterminismError, match="state kept between executions"):
        explore(saga, settings=_no_db(), report_dir=None, sweep_faults=1, max_examples=0)
    assert CircuitBreaker.failures >= 3

    # It used to say the saga "returned None with no fault injected; pass outcome=".
    with pytest.raises(NondeterminismError) as info:
        explore(saga, settings=_no_db(), report_dir=None)
    message = str(info.value)
    assert message.startswith(
        "saga 'breaker' is not deterministic: its executions are not independent. Earlier in this process its "
        "fault-free execution ended 'completed' after 1 calls; now the same execution ends 'None' after 0"
    )
    assert f"at module or class level in {__name__}" in message
    assert "a circuit breaker" in message


@pytest.mark.usefixtures("closed_breaker")
def test_state_left_by_another_saga_is_named_as_a_possible_cause() -> None:
    with pytest.raises(NondeterminismError):
        explore(_saga("first"), settings=_no_db(), report_dir=None, sweep_faults=1, max_examples=0)

    with pytest.raises(SagaDefinitionError) as info:
        explore(_saga("second"), settings=_no_db(), report_dir=None)
    message = str(info.value)
    assert message.startswith("saga 'second' returned None with no fault injected; return one of completed, compensated, failed")
    assert "its executions are not independent: an earlier execution in this process left state behind" in message
    assert f"at module or class level in {__name__}" in message


def test_a_ledger_handed_to_two_executions_is_named() -> None:
    shared = Payment()
    saga = Saga(
        "shared",
        steps=STEPS,
        participants=lambda: {"payment": shared},
        run=lambda services, order: services.payment.charge(amount=1, idempotency_key="k") and "completed",
        input={"order_id": "o-1"},
    )
    with pytest.raises(SagaDefinitionError, match=r"participants\(\) gave two executions the same ledger of payment, so the effects"):
        explore(saga, settings=_no_db(), report_dir=None)
