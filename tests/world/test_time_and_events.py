"""Virtual time that matters: events a participant sends the saga (delivered, delayed, duplicated,
dropped by the plan), waits for them with a deadline, retries within a step's budget with a
bounded, jittered back-off, per-step timeouts and the saga's deadline. Nothing really sleeps."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from saga_verify import FaultPlan, Ledger, Saga, Step, run_plan
from saga_verify.errors import PlanError, SagaDefinitionError
from saga_verify.faults import Delay, DeliveryPoint, Drop, Duplicate, FailBeforeEffect, Outage, Timeout
from saga_verify.invariants import check, terminates

PAID = DeliveryPoint("payment", "paid")


class Provider:
    """Answers a charge with "pending" and sends the ``paid`` webhook 5 s later, once per key."""

    def __init__(self) -> None:
        self.ledger = Ledger()
        self.seen: dict[str, dict[str, Any]] = {}

    def charge(self, amount: float, idempotency_key: str) -> dict[str, Any]:
        if idempotency_key not in self.seen:
            self.ledger.record("charge", amount)
            self.seen[idempotency_key] = {"status": "pending"}
            self.ledger.send("paid", {"amount": amount}, after=5.0)
        return self.seen[idempotency_key]

    def refund(self, idempotency_key: str) -> dict[str, Any]:
        self.ledger.record("refund")
        return {"status": "ok"}


def webhook_saga(run: Any, **step: Any) -> Saga:
    options = {"retries": 3, "events": "paid", **step}
    return Saga(
        "webhook",
        steps=[Step("payment", "charge", "refund", **options)],
        participants=lambda: {"payment": Provider()},
        run=run,
        deadline=120.0,
    )


def waits(timeout: float | None, times: int = 1) -> Any:
    def run(services: Any, _: Any) -> Any:
        services.payment.charge(amount=10, idempotency_key="k")
        got = []
        for _ in range(times):
            try:
                got.append((services.wait_for("payment.paid", timeout=timeout), services.clock.now()))
            except TimeoutError as exc:
                return {"status": "compensated", "timed_out": str(exc), "at": services.clock.now(), "got": got}
        return {"status": "completed", "got": got}

    return run


def events_in(execution: Any) -> list[tuple[str, str, float]]:
    return [(e.point, e.outcome, round(e.time, 3)) for e in execution.trace if e.operation == "paid"]


def test_an_event_arrives_after_its_participant_sent_it_and_the_saga_wakes_then() -> None:
    execution = run_plan(webhook_saga(waits(60.0)))
    assert execution.status == "completed"
    (payload, woke), = execution.result["got"]
    assert payload == {"amount": 10}
    assert woke == pytest.approx(5.0, abs=0.05)  # not the 60 s the saga was ready to wait
    assert [o for _, o, _ in events_in(execution)] == ["event"]
    assert [m.kind for m in execution.moments] == ["wait", "received"]


def test_a_dropped_event_never_arrives_and_the_wait_times_out_at_its_deadline() -> None:
    execution = run_plan(webhook_saga(waits(60.0)), FaultPlan((Drop(PAID),)))
    assert execution.status == "compensated"
    assert execution.result["at"] == pytest.approx(60.0, abs=0.05)
    assert "payment.paid did not arrive within 60s" in execution.result["timed_out"]
    assert [o for _, o, _ in events_in(execution)] == ["dropped"]
    assert [m.kind for m in execution.moments] == ["wait", "wait-timeout"]
    assert execution.faults == (Drop(PAID),)


def test_a_delayed_event_arrives_later_within_the_wait_or_after_it() -> None:
    within = run_plan(webhook_saga(waits(60.0)), FaultPlan((Delay(PAID, seconds=20.0),)))
    assert within.status == "completed"
    assert within.result["got"][0][1] == pytest.approx(25.0, abs=0.05)
    past = run_plan(webhook_saga(waits(60.0)), FaultPlan((Delay(PAID, seconds=100.0),)))
    assert past.status == "compensated"
    # It still arrives, after the saga gave up on it: the trace shows it, in time order.
    assert events_in(past) == [("payment.paid#1", "event", pytest.approx(105.0, abs=0.05))]
    times = [e.time for e in past.trace]
    assert times == sorted(times)


def test_a_duplicated_event_arrives_twice() -> None:
    execution = run_plan(webhook_saga(waits(60.0, times=2)), FaultPlan((Duplicate(PAID, lag=3.0),)))
    assert execution.status == "completed"
    assert [round(t, 1) for _, t in execution.result["got"]] == [5.0, 8.0]
    assert [o for _, o, _ in events_in(execution)] == ["event", "copy"]


def test_an_outage_at_an_event_loses_it_and_every_later_one() -> None:
    def run(services: Any, _: Any) -> str:
        for key in ("a", "b"):
            services.payment.charge(amount=1, idempotency_key=key)
        try:
            services.wait_for("payment.paid", timeout=30)
        except TimeoutError:
            return "failed"
        return "completed"

    execution = run_plan(webhook_saga(run), FaultPlan((Outage(PAID),)))
    assert execution.status == "failed"
    assert [o for _, o, _ in events_in(execution)] == ["dropped", "dropped"]


def test_a_wait_with_no_deadline_for_an_event_that_never_comes_stops_the_execution() -> None:
    saga = webhook_saga(waits(None))
    execution = run_plan(saga, FaultPlan((Drop(PAID),)))
    assert execution.status == "halted"
    assert execution.halted == "waited for payment.paid with no deadline, and nothing will ever send it"
    assert [v.invariant for v in check(execution, [terminates])] == ["terminates"]
    # Without the drop it waits (on virtual time) and goes on.
    assert run_plan(saga).status == "completed"


def test_waiting_for_an_undeclared_event_is_a_definition_error_whatever_the_saga_catches() -> None:
    def run(services: Any, _: Any) -> str:
        try:
            services.wait_for("payment.refunded", timeout=1)
        except Exception:
            pass
        return "completed"

    with pytest.raises(SagaDefinitionError, match=r"payment.refunded.*declared events: payment.paid"):
        run_plan(webhook_saga(run))


def test_plans_put_only_event_faults_at_events_and_drops_only_there() -> None:
    saga = webhook_saga(waits(60.0))
    with pytest.raises(PlanError, match=r"fail at payment.paid#1, an event's arrival"):
        FaultPlan((FailBeforeEffect(PAID),)).validate(saga)
    with pytest.raises(PlanError, match=r"drops payment.charge#1, which is no event"):
        FaultPlan((Drop(DeliveryPoint("payment", "charge")),)).validate(saga)


def test_retry_calls_again_within_the_budget_with_bounded_exponential_jittered_backoff() -> None:
    def run(services: Any, _: Any) -> str:
        try:
            services.retry(services.payment.charge, amount=1, idempotency_key="k")
        except ConnectionError:
            return "failed"
        return "completed"

    saga = webhook_saga(run, retries=5, backoff=1.0, max_backoff=4.0)
    execution = run_plan(saga, FaultPlan((Outage(DeliveryPoint("payment", "charge")),)))
    assert execution.status == "failed"
    calls = [e for e in execution.trace if e.operation == "charge"]
    assert len(calls) == 6  # the first call and five retries, no more
    waits_ = [m for m in execution.moments if m.kind == "backoff"]
    assert len(waits_) == 5
    assert execution.moments[-1].kind == "gave-up"
    ceilings = [1.0, 2.0, 4.0, 4.0, 4.0]  # doubled, then capped
    gaps = [b.time - a.time for a, b in itertools.pairwise(calls)]
    for gap, ceiling in zip(gaps, ceilings, strict=True):
        # The back-off lies in the upper half of its ceiling (plus the network's few milliseconds).
        assert ceiling / 2 <= gap <= ceiling + 0.02
    # The jitter comes from the plan's seed: another seed, other waits; the same seed, the same.
    other = run_plan(saga, FaultPlan((Outage(DeliveryPoint("payment", "charge")),), seed=7))
    again = run_plan(saga, FaultPlan((Outage(DeliveryPoint("payment", "charge")),), seed=7))
    assert [m.text for m in other.moments] != [m.text for m in execution.moments]
    assert [m.text for m in other.moments] == [m.text for m in again.moments]


def test_retry_returns_the_first_answer_and_stops_before_the_deadline() -> None:
    def run(services: Any, _: Any) -> str:
        services.clock.sleep(118.0)
        try:
            services.retry(services.payment.charge, amount=1, idempotency_key="k")
        except ConnectionError:
            return "failed"
        return "completed"

    saga = webhook_saga(run, retries=5, backoff=1.0, max_backoff=4.0)
    answered = run_plan(saga, FaultPlan((FailBeforeEffect(DeliveryPoint("payment", "charge")),)))
    assert answered.status == "completed"
    assert [e.outcome for e in answered.trace if e.operation == "charge"] == ["failed", "ok"]
    stopped = run_plan(saga, FaultPlan((Outage(DeliveryPoint("payment", "charge")),)))
    assert stopped.status == "failed"
    assert all(e.time < 120.0 for e in stopped.trace)
    assert "would pass the deadline" in stopped.moments[-1].text


def test_retry_needs_a_budget_on_the_step() -> None:
    def run(services: Any, _: Any) -> str:
        services.retry(services.payment.charge, amount=1, idempotency_key="k")
        return "completed"

    with pytest.raises(SagaDefinitionError, match="declares no retry budget; give it retries="):
        run_plan(webhook_saga(run, retries=None))


def test_a_step_timeout_is_how_long_its_caller_waits() -> None:
    def run(services: Any, _: Any) -> str:
        try:
            services.payment.charge(amount=1, idempotency_key="k")
        except TimeoutError:
            return "failed"
        return "completed"

    plan = FaultPlan((Timeout(DeliveryPoint("payment", "charge")),))
    assert run_plan(webhook_saga(run), plan).elapsed == pytest.approx(1.0, abs=0.02)  # the saga's call_timeout
    assert run_plan(webhook_saga(run, timeout=4.0), plan).elapsed == pytest.approx(4.0, abs=0.02)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"retries": -1}, "retries= must be a whole number >= 0"),
        ({"timeout": 0}, "timeout= must be a positive number"),
        ({"backoff": 2.0, "max_backoff": 1.0}, "max_backoff= .* is below backoff="),
        ({"events": "charge"}, "has the name of an operation"),
        ({"events": ["bad name"]}, "events= takes event names"),
    ],
)
def test_bad_timing_declarations_are_refused_naming_them(options: dict[str, Any], message: str) -> None:
    with pytest.raises(SagaDefinitionError, match=message):
        Step("payment", "charge", "refund", **options)


def test_a_saga_deadline_must_be_positive() -> None:
    with pytest.raises(SagaDefinitionError, match="deadline must be a positive number"):
        Saga("s", steps=[Step("payment", "charge")], participants=lambda: {"payment": Provider()}, run=lambda s, i: "completed", deadline=0)


def test_a_participant_sends_events_only_inside_an_execution() -> None:
    with pytest.raises(SagaDefinitionError, match="outside a simulated execution"):
        Provider().charge(amount=1, idempotency_key="k")


def test_same_plan_same_trace_with_events_and_backoff() -> None:
    from saga_verify._world import trace_to_json

    def run(services: Any, _: Any) -> str:
        services.retry(services.payment.charge, amount=1, idempotency_key="k")
        services.wait_for("payment.paid", timeout=30)
        return "completed"

    saga = webhook_saga(run)
    plan = FaultPlan((FailBeforeEffect(DeliveryPoint("payment", "charge")), Duplicate(PAID, lag=2.0)), seed=3)
    a, b = run_plan(saga, plan), run_plan(saga, plan)
    assert trace_to_json(a.trace) == trace_to_json(b.trace)
    assert a.moments == b.moments


# -- async sagas -----------------------------------------------------------------------------------
def test_an_async_saga_awaits_an_event_while_its_other_tasks_run() -> None:
    import asyncio

    async def run(services: Any, _: Any) -> Any:
        async def charge_later() -> None:
            await asyncio.sleep(10)  # virtual: the loop moves the clock
            services.payment.charge(amount=3, idempotency_key="k")

        task = asyncio.create_task(charge_later())
        payload = await services.await_for("payment.paid", timeout=60)
        await task
        return {"status": "completed", "payload": payload, "at": services.clock.now()}

    execution = run_plan(webhook_saga(run))
    assert execution.status == "completed"
    assert execution.result["payload"] == {"amount": 3}
    assert execution.result["at"] == pytest.approx(15.0, abs=0.05)  # sent at 10, arrives 5 s later
    dropped = run_plan(webhook_saga(run), FaultPlan((Drop(PAID),)))
    assert dropped.status == "crashed"  # the TimeoutError at t=60 went unhandled
    assert isinstance(dropped.error, TimeoutError)
    assert dropped.returned_at == pytest.approx(60.0, abs=0.05)


def test_an_async_wait_with_no_deadline_for_an_event_nobody_sends_stops_the_execution() -> None:
    async def run(services: Any, _: Any) -> str:
        services.payment.charge(amount=1, idempotency_key="k")
        await services.await_for("payment.paid")
        return "completed"

    assert run_plan(webhook_saga(run)).status == "completed"
    execution = run_plan(webhook_saga(run), FaultPlan((Drop(PAID),)))
    assert execution.status == "halted"
    assert [v.invariant for v in check(execution, [terminates])] == ["terminates"]


def test_aretry_retries_an_async_saga_within_the_budget() -> None:
    async def run(services: Any, _: Any) -> str:
        try:
            await services.aretry(services.payment.charge, amount=1, idempotency_key="k")
        except ConnectionError:
            return "failed"
        return "completed"

    execution = run_plan(webhook_saga(run, retries=2), FaultPlan((Outage(DeliveryPoint("payment", "charge")),)))
    assert execution.status == "failed"
    assert len([e for e in execution.trace if e.operation == "charge"]) == 3
    assert [m.kind for m in execution.moments] == ["backoff", "backoff", "gave-up"]


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_request_held_in_the_network_lands_while_the_saga_waits_and_its_event_wakes_it(kind: str) -> None:
    def charge(services: Any) -> None:
        try:
            services.payment.charge(amount=1, idempotency_key="k")
        except TimeoutError:
            pass  # held: it lands at t=50, and the provider sends the webhook then

    def run(services: Any, _: Any) -> Any:
        charge(services)
        services.wait_for("payment.paid")
        return {"status": "completed", "at": services.clock.now()}

    async def arun(services: Any, _: Any) -> Any:
        charge(services)
        await services.await_for("payment.paid")
        return {"status": "completed", "at": services.clock.now()}

    plan = FaultPlan((Delay(DeliveryPoint("payment", "charge"), seconds=50.0),))
    execution = run_plan(webhook_saga(run if kind == "sync" else arun), plan)
    assert execution.status == "completed"
    assert execution.result["at"] == pytest.approx(55.0, abs=0.05)
    assert [e.outcome for e in execution.trace] == ["held", "late", "event"]
