"""The invariants about time: a saga with a deadline settles by it (past it, it only compensates
and waits for nothing); no step is called more often than its retry budget allows."""

from __future__ import annotations

from typing import Any

from saga_verify import FaultPlan, Ledger, Saga, Step, run_plan
from saga_verify.faults import Delay, DeliveryPoint, Drop, Outage
from saga_verify.invariants import check, retry_budget, standard_invariants, within_deadline
from saga_verify.reference import order_saga


class Participant:
    def __init__(self) -> None:
        self.ledger = Ledger()

    def charge(self, key: str = "") -> dict[str, str]:
        self.ledger.record("charge")
        self.ledger.send("paid", {}, after=5.0)
        return {"status": "ok"}

    def refund(self, key: str = "") -> dict[str, str]:
        self.ledger.record("refund")
        return {"status": "ok"}


def saga(run: Any, retries: int | None = 2) -> Saga:
    return Saga(
        "timed",
        steps=[Step("payment", "charge", "refund", retries=retries, events="paid")],
        participants=lambda: {"payment": Participant()},
        run=run,
        deadline=60.0,
    )


def broken(execution: Any) -> list[str]:
    return [v.message for v in check(execution, [within_deadline, retry_budget])]


def test_a_saga_that_settles_before_its_deadline_holds() -> None:
    def run(services: Any, _: Any) -> str:
        services.payment.charge()
        services.wait_for("payment.paid", timeout=30)
        return "completed"

    assert broken(run_plan(saga(run))) == []


def test_compensating_after_the_deadline_is_allowed() -> None:
    def run(services: Any, _: Any) -> str:
        services.payment.charge()
        services.clock.sleep(70)
        services.payment.refund()
        return "compensated"

    assert broken(run_plan(saga(run))) == []


def test_a_forward_call_after_the_deadline_breaks_it() -> None:
    def run(services: Any, _: Any) -> str:
        services.clock.sleep(70)
        services.payment.charge()
        return "compensated"

    assert broken(run_plan(saga(run))) == [
        "the saga called payment.charge#1 after its deadline (t=60): past it, it may only compensate"
    ]


def test_completing_after_the_deadline_and_waiting_past_it_break_it() -> None:
    def run(services: Any, _: Any) -> str:
        services.payment.charge()
        services.wait_for("payment.paid", timeout=100)
        return "completed"

    messages = broken(run_plan(saga(run), FaultPlan((Delay(DeliveryPoint("payment", "paid"), seconds=80),))))
    assert len(messages) == 2
    assert messages[0].startswith("the saga was still waiting past its deadline (t=60): payment.paid arrives")
    assert messages[1].startswith("the saga reported completed at t=85.")


def test_a_saga_that_never_finishes_breaks_it() -> None:
    def run(services: Any, _: Any) -> str:
        services.payment.charge()
        services.wait_for("payment.paid")
        return "completed"

    messages = broken(run_plan(saga(run), FaultPlan((Drop(DeliveryPoint("payment", "paid")),))))
    assert messages == [
        "the saga had to settle by its deadline (t=60), but it never finished: it waited for payment.paid with no deadline, "
        "and nothing will ever send it"
    ]


def test_calls_past_the_retry_budget_break_it_and_calls_within_it_do_not() -> None:
    def run_times(n: int) -> Any:
        def run(services: Any, _: Any) -> str:
            for _ in range(n):
                try:
                    services.payment.charge()
                except ConnectionError:
                    continue
            return "failed"

        return run

    outage = FaultPlan((Outage(DeliveryPoint("payment", "charge")),))
    assert broken(run_plan(saga(run_times(3)), outage)) == []
    assert broken(run_plan(saga(run_times(4)), outage)) == [
        "payment.charge was called 4 times for timed; its retry budget allows 3 (retries=2)"
    ]
    # A step that declares no budget is not held to one.
    assert broken(run_plan(saga(run_times(9), retries=None), outage)) == []


def test_the_standard_invariants_include_them_only_where_a_saga_declares_them() -> None:
    names = [i.name for i in standard_invariants(saga(lambda s, i: "completed"))]
    assert names[-2:] == ["within_deadline", "retry_budget"]
    assert not {"within_deadline", "retry_budget"} & {i.name for i in standard_invariants(order_saga)}
