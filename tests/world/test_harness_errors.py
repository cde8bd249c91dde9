"""No error of the harness becomes a verdict, whatever the saga's code does with it: one raised
inside the saga is raised again when the run ends, even if the saga caught it; a ledger row that
names no operation is an error. Plain participants work in async sagas."""

from __future__ import annotations

import asyncio
from typing import Any

import hypothesis
import pytest

from saga_verify import FaultPlan, Ledger, Saga, Step, explore, run_plan
from saga_verify.errors import SagaDefinitionError
from saga_verify.faults import DeliveryPoint, LoseReply, Refuse

ORDER = {"order_id": "o-1", "amount": 100}
STEPS = [Step("payment", "charge", "refund", refuse=lambda payment: payment.decline_next())]


class Payment:
    def __init__(self, charged_action: str = "charge") -> None:
        self.ledger = Ledger()
        self.charged_action = charged_action
        self.declining = False

    def decline_next(self) -> None:
        self.declining = True

    def charge(self, amount: int, idempotency_key: str | None = None) -> dict[str, str]:
        if self.declining:
            self.declining = False
            return {"status": "declined"}
        self.ledger.record(self.charged_action, amount)
        return {"status": "ok"}

    def refund(self, amount: int) -> dict[str, str]:
        self.ledger.record("refund", amount)
        return {"status": "ok"}


def _no_db() -> hypothesis.settings:
    return hypothesis.settings(database=None)


def _saga(name: str, run: Any, participants: Any = None) -> Saga:
    return Saga(name, steps=STEPS, participants=participants or (lambda: {"payment": Payment()}), run=run, input=ORDER)


# -- plain participants in async sagas ------------------------------------------------------------
def _charge_without_key_sync(services: Any, order: Any) -> str:
    for _ in range(3):
        try:
            services.payment.charge(amount=order["amount"])  # the bug: no idempotency key
            return "completed"
        except (ConnectionError, TimeoutError):
            continue
    return "failed"


async def _charge_without_key_async(services: Any, order: Any) -> str:
    for _ in range(3):
        try:
            services.payment.charge(amount=order["amount"])  # a plain participant, called plainly
            return "completed"
        except Exception:  # as libraries do around their steps
            await asyncio.sleep(0.1)
    return "failed"


def test_an_async_saga_calls_plain_participants_and_is_judged_like_a_sync_one() -> None:
    # It used to get a SagaDefinitionError inside its code; catching Exception, this saga
    # swallowed it, and the search reported that it held every invariant.
    sync = explore(_saga("sync", _charge_without_key_sync), settings=_no_db(), report_dir=None, all_failures=False)
    asynchronous = explore(_saga("async", _charge_without_key_async), settings=_no_db(), report_dir=None, all_failures=False)
    assert [(str(f.plan), f.invariants) for f in asynchronous.failures] == [("lose-reply at payment.charge#1", ("no_double_charge",))]
    assert [(str(f.plan), f.invariants) for f in sync.failures] == [(str(f.plan), f.invariants) for f in asynchronous.failures]


def test_an_async_participant_method_is_awaited_by_the_saga() -> None:
    class AsyncPayment(Payment):
        async def charge(self, amount: int, idempotency_key: str | None = None) -> dict[str, str]:  # type: ignore[override]
            await asyncio.sleep(0.5)  # it takes a while, on the virtual clock
            return super().charge(amount, idempotency_key)

    async def run(services: Any, order: Any) -> str:
        reply = await services.payment.charge(amount=order["amount"], idempotency_key="k")
        return "completed" if reply["status"] == "ok" else "failed"

    saga = _saga("awaits", run, participants=lambda: {"payment": AsyncPayment()})
    execution = run_plan(saga)
    assert execution.status == "completed"
    ((entry,), (row,)) = execution.trace, execution.rows()
    assert (entry.point, entry.outcome, entry.reply) == ("payment.charge#1", "ok", {"status": "ok"})
    assert row.delivery == 0
    assert row.time == pytest.approx(entry.time + 0.5)
    lost = run_plan(saga, FaultPlan((LoseReply(DeliveryPoint("payment", "charge", 1)),)))
    assert lost.status == "crashed"
    assert lost.trace[0].outcome == "reply-lost"
    assert len(lost.rows("payment", "charge")) == 1


# -- harness errors the saga catches ----------------------------------------------------------------
def _swallows(call: Any) -> Any:
    def run(services: Any, order: Any) -> str:
        try:
            call(services)
        except Exception:  # the saga's own catch-all
            return "failed"
        return "completed"

    return run


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda services: services.payment.capture(amount=1), r"the saga called payment.capture, which no step declares"),
        (lambda services: services.billing.charge(amount=1), r"the saga asked for services.billing"),
        (lambda services: services.clock.sleep(-1), r"clock.sleep\(\) takes a finite number of seconds >= 0, got -1"),
    ],
    ids=["undeclared-operation", "unknown-participant", "bad-sleep"],
)
def test_a_harness_error_the_saga_catches_is_raised_when_the_run_ends(call: Any, message: str) -> None:
    saga = _saga("swallows", _swallows(call))
    with pytest.raises(SagaDefinitionError, match=message):
        run_plan(saga)
    with pytest.raises(SagaDefinitionError, match=message):
        explore(saga, settings=_no_db(), report_dir=None)


def test_a_harness_error_that_only_a_fault_reaches_ends_the_search_instead_of_a_verdict() -> None:
    def run(services: Any, order: Any) -> str:
        try:
            services.payment.charge(amount=order["amount"], idempotency_key="k")
        except ConnectionError:
            try:
                services.payment.void(amount=order["amount"])  # no step declares it
            except Exception:
                return "failed"
        return "completed"

    with pytest.raises(SagaDefinitionError, match=r"payment.void, which no step declares; declared operations of payment: charge, refund"):
        explore(_saga("void", run), settings=_no_db(), report_dir=None)
    # Hypothesis alone reaches it too, and stops there rather than shrinking it as a failure.
    with pytest.raises(SagaDefinitionError, match=r"payment.void"):
        explore(_saga("void", run), settings=_no_db(), report_dir=None, sweep_faults=0, max_examples=200)


def test_a_refuse_hook_that_raises_is_a_harness_error() -> None:
    def broken_hook(payment: Any) -> None:
        raise KeyError("declining")

    saga = Saga(
        "hook",
        steps=[Step("payment", "charge", "refund", refuse=broken_hook)],
        participants=lambda: {"payment": Payment()},
        run=_swallows(lambda services: services.payment.charge(amount=1)),
        input=ORDER,
    )
    with pytest.raises(SagaDefinitionError, match=r"the refuse hook of step payment.charge raised KeyError: 'declining'"):
        run_plan(saga, FaultPlan((Refuse(DeliveryPoint("payment", "charge", 1)),)))


# -- ledger rows ---------------------------------------------------------------------------------------
def test_a_ledger_row_that_names_no_operation_is_an_error_naming_it() -> None:
    # A participant recording "charged" for the step "charge" made every invariant about the
    # charge hold for nothing.
    saga = _saga("typo", _charge_without_key_sync, participants=lambda: {"payment": Payment(charged_action="charged")})
    with pytest.raises(SagaDefinitionError) as info:
        explore(saga, settings=_no_db(), report_dir=None)
    assert str(info.value).startswith(
        "participant 'payment' recorded 'charged' in its ledger, which no step of saga 'typo' declares; "
        "the operations of payment: charge, refund."
    )
