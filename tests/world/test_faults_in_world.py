"""What each fault kind does to an execution of the reference order saga, as the trace, the
ledgers, the saga's status and the virtual clock show it."""

from __future__ import annotations

from typing import Any

import pytest

from saga_verify import Execution, FaultPlan, LedgerRow, Saga, Step, TraceEntry, run_plan
from saga_verify._world import OUTCOMES, trace_to_json
from saga_verify.errors import PlanError
from saga_verify.faults import (
    Delay,
    DeliveryPoint,
    Duplicate,
    FailBeforeEffect,
    Fault,
    LoseReply,
    Outage,
    Pause,
    Refuse,
    Timeout,
)
from saga_verify.reference import order_saga

P = DeliveryPoint.parse
CALL_TIMEOUT = order_saga.call_timeout  # 1.0
BACKOFF = 0.2  # the reference saga's first back-off
LATENCY = (0.010, 0.015)  # per delivery: 10 ms plus up to 5 ms of jitter


def run(*faults: Fault, seed: int = 0) -> Execution:
    return run_plan(order_saga, FaultPlan(tuple(faults), seed=seed))


def entries(execution: Execution, point: str) -> list[TraceEntry]:
    participant, operation = point.split(".")
    return [e for e in execution.trace if (e.participant, e.operation) == (participant, operation)]


def outcomes(execution: Execution, point: str) -> list[tuple[int, str, str | None]]:
    return [(e.attempt, e.outcome, e.fault) for e in entries(execution, point)]


def effects(execution: Execution) -> list[tuple[str, str]]:
    return [(r.participant, r.action) for r in execution.rows()]


HAPPY = [("inventory", "reserve"), ("payment", "charge"), ("shipping", "create"), ("notification", "send")]


@pytest.fixture(scope="module")
def baseline() -> Execution:
    return run()


def test_without_faults_every_step_takes_effect_once(baseline: Execution) -> None:
    assert baseline.status == "completed"
    assert baseline.result == "completed"
    assert baseline.error is None
    assert baseline.halted is None
    assert [e.point for e in baseline.trace] == [
        "inventory.reserve#1",
        "payment.charge#1",
        "shipping.create#1",
        "notification.send#1",
    ]
    assert all(e.outcome == "ok" and e.fault is None for e in baseline.trace)
    assert effects(baseline) == HAPPY
    assert baseline.faults == ()
    assert baseline.correlation_id == "order-1"
    # each delivery costs a little virtual latency; nothing else moves the clock
    assert LATENCY[0] * 4 <= baseline.elapsed <= LATENCY[1] * 4
    assert [e.seq for e in baseline.trace] == [0, 1, 2, 3]
    assert all(a.time < b.time for a, b in zip(baseline.trace, baseline.trace[1:], strict=False))


def test_fail_is_not_applied_and_the_caller_retries(baseline: Execution) -> None:
    execution = run(FailBeforeEffect(P("payment.charge#1")))
    assert outcomes(execution, "payment.charge") == [(1, "failed", "fail"), (2, "ok", None)]
    failed, retry = entries(execution, "payment.charge")
    assert failed.reply is None
    (charge,) = execution.rows("payment", "charge")
    assert charge.delivery == retry.seq  # the effect came from the retry, not the failed call
    assert execution.status == "completed"
    assert effects(execution) == HAPPY
    # a connection error costs no waiting: only the saga's back-off and latency lie between
    assert BACKOFF + LATENCY[0] <= retry.time - failed.time <= BACKOFF + LATENCY[1]
    assert execution.faults == (FailBeforeEffect(P("payment.charge#1")),)


def test_timeout_is_not_applied_and_costs_the_call_timeout(baseline: Execution) -> None:
    execution = run(Timeout(P("payment.charge#1")))
    assert outcomes(execution, "payment.charge") == [(1, "timed-out", "timeout"), (2, "ok", None)]
    timed_out, retry = entries(execution, "payment.charge")
    (charge,) = execution.rows("payment", "charge")
    assert charge.delivery == retry.seq
    assert execution.status == "completed"
    gap = retry.time - timed_out.time
    assert CALL_TIMEOUT + BACKOFF + LATENCY[0] <= gap <= CALL_TIMEOUT + BACKOFF + LATENCY[1]
    # the whole run is longer by the wait, the back-off and one more delivery's latency
    assert CALL_TIMEOUT + BACKOFF <= execution.elapsed - baseline.elapsed <= CALL_TIMEOUT + BACKOFF + 0.05


def test_lose_reply_is_applied_once_and_the_retry_gets_the_stored_reply() -> None:
    execution = run(LoseReply(P("payment.charge#1")))
    assert outcomes(execution, "payment.charge") == [(1, "reply-lost", "lose-reply"), (2, "ok", None)]
    lost, retry = entries(execution, "payment.charge")
    # the participant answered the first call; the caller never saw it
    assert lost.reply == {"status": "ok", "charge_id": "ch-1"}
    assert retry.reply == lost.reply
    assert lost.key == retry.key == "order-1:charge"
    (charge,) = execution.rows("payment", "charge")  # ONE charge despite two deliveries
    assert charge.delivery == lost.seq
    assert charge.amount == 100
    assert execution.status == "completed"
    assert retry.time - lost.time >= CALL_TIMEOUT + BACKOFF


def test_refuse_is_a_business_answer_and_the_saga_compensates() -> None:
    execution = run(Refuse(P("payment.charge#1")))
    (charge,) = entries(execution, "payment.charge")
    assert (charge.outcome, charge.fault) == ("ok", "refuse")
    assert charge.reply == {"status": "refused", "reason": "card_declined"}
    assert execution.status == "compensated"
    assert execution.rows("payment") == []
    # the reservation made before the refusal is released; nothing after it ran
    assert effects(execution) == [("inventory", "reserve"), ("inventory", "release")]
    assert [e.point for e in execution.trace] == ["inventory.reserve#1", "payment.charge#1", "inventory.release#1"]


def test_refuse_of_shipping_undoes_charge_and_reservation_in_reverse() -> None:
    execution = run(Refuse(P("shipping.create#1")))
    assert execution.status == "compensated"
    assert effects(execution) == [
        ("inventory", "reserve"),
        ("payment", "charge"),
        ("payment", "refund"),
        ("inventory", "release"),
    ]
    (refund,) = execution.rows("payment", "refund")
    (charge,) = execution.rows("payment", "charge")
    assert refund.ref == charge.ref == "ch-1"


def test_duplicate_without_lag_lands_a_copy_that_the_receiver_dedupes() -> None:
    execution = run(Duplicate(P("payment.charge#1")))
    assert outcomes(execution, "payment.charge") == [(1, "ok", "duplicate lag=0"), (1, "copy", "duplicate lag=0")]
    original, copy = entries(execution, "payment.charge")
    assert copy.seq == original.seq + 1
    assert copy.time == original.time
    assert copy.reply == original.reply  # the stored reply
    assert len(execution.rows("payment", "charge")) == 1
    assert execution.status == "completed"


def test_a_late_duplicate_lands_after_the_saga_finished(baseline: Execution) -> None:
    execution = run(Duplicate(P("payment.charge#1"), lag=30.0))
    original, late = entries(execution, "payment.charge")
    assert (original.outcome, late.outcome) == ("ok", "late")
    assert late.fault == "duplicate lag=30"
    assert late.attempt == 1
    assert late.time >= 30.0
    assert late.time == pytest.approx(original.time + 30.0)
    assert execution.trace[-1] == late  # after the notification
    assert len(execution.rows("payment", "charge")) == 1
    assert execution.status == "completed"
    assert execution.elapsed == pytest.approx(late.time)
    assert execution.elapsed > baseline.elapsed + 29


def test_a_short_delay_is_a_slow_reply() -> None:
    execution = run(Delay(P("payment.charge#1"), seconds=0.5))
    (charge,) = entries(execution, "payment.charge")
    assert (charge.outcome, charge.fault) == ("ok", "delay seconds=0.5")
    reserve = entries(execution, "inventory.reserve")[0]
    assert 0.5 + LATENCY[0] <= charge.time - reserve.time <= 0.5 + LATENCY[1]
    assert len(execution.rows("payment", "charge")) == 1
    assert execution.status == "completed"
    assert len(execution.trace) == 4  # no retry: the reply came within the call timeout


def test_a_long_delay_holds_the_request_and_lands_it_late() -> None:
    execution = run(Delay(P("payment.charge#1"), seconds=30.0))
    assert outcomes(execution, "payment.charge") == [
        (1, "held", "delay seconds=30"),
        (2, "ok", None),
        (1, "late", "delay seconds=30"),
    ]
    held, retry, late = entries(execution, "payment.charge")
    assert held.reply is None
    assert retry.time - held.time >= CALL_TIMEOUT + BACKOFF  # the caller timed out, then retried
    assert late.time == pytest.approx(held.time + 30.0)
    assert late.reply == retry.reply  # the retry's key is stored: the late copy is deduped
    (charge,) = execution.rows("payment", "charge")
    assert charge.delivery == retry.seq
    assert execution.status == "completed"


def test_a_delay_equal_to_the_call_timeout_is_already_a_timeout() -> None:
    execution = run(Delay(P("payment.charge#1"), seconds=CALL_TIMEOUT))
    # the caller timed out; the held request lands during its back-off, before the retry
    assert outcomes(execution, "payment.charge") == [
        (1, "held", "delay seconds=1"),
        (1, "late", "delay seconds=1"),
        (2, "ok", None),
    ]
    held, late, retry = entries(execution, "payment.charge")
    assert held.seq < late.seq < retry.seq
    (charge,) = execution.rows("payment", "charge")
    assert charge.delivery == late.seq  # the held request took effect; the retry got its reply
    assert retry.reply == late.reply


def test_a_request_landing_during_the_run_is_stamped_with_its_due_time() -> None:
    # A copy due 1 s after the charge lands while the caller waits out a timeout on the
    # shipment. The trace (and the ledger row) must say when it landed, original + lag, as
    # they do for copies that land after the saga finished, not when the next call happened.
    execution = run(Duplicate(P("payment.charge#1"), lag=1.0), Timeout(P("shipping.create#1")))
    original, late = entries(execution, "payment.charge")
    timed_out, _retry = entries(execution, "shipping.create")
    assert late.outcome == "late"
    assert timed_out.seq < late.seq
    assert late.time == pytest.approx(original.time + 1.0)


def test_outage_fails_every_later_attempt() -> None:
    execution = run(Outage(P("payment.charge#1")))
    assert outcomes(execution, "payment.charge") == [
        (1, "failed", "outage"),
        (2, "failed", "outage"),
        (3, "failed", "outage"),
    ]
    assert execution.rows("payment") == []
    # nothing may have been charged (connection errors only), so nothing is refunded
    assert entries(execution, "payment.refund") == []
    assert execution.status == "compensated"
    assert effects(execution) == [("inventory", "reserve"), ("inventory", "release")]
    # the outage is one injected fault, however many calls it fails
    assert execution.faults == (Outage(P("payment.charge#1")),)


def test_outage_from_a_later_attempt_spares_the_earlier_ones() -> None:
    execution = run(Outage(P("payment.charge#2")))
    # the first call succeeds, so there is never an attempt 2 to fail
    assert outcomes(execution, "payment.charge") == [(1, "ok", None)]
    assert execution.faults == ()
    execution = run(FailBeforeEffect(P("payment.charge#1")), Outage(P("payment.charge#2")))
    assert outcomes(execution, "payment.charge") == [
        (1, "failed", "fail"),
        (2, "failed", "outage"),
        (3, "failed", "outage"),
    ]


def test_a_pause_holds_every_call_to_the_participant_until_it_thaws() -> None:
    execution = run(Pause(P("payment.charge#1"), seconds=30.0))
    # The charge and its two retries wait in the frozen payment, then so do the three refunds
    # the saga tries once it gives up; inventory, not frozen, is released meanwhile.
    assert [(e.point, e.outcome, e.fault) for e in execution.trace[1:]] == [
        ("payment.charge#1", "frozen", "pause seconds=30"),
        ("payment.charge#2", "frozen", None),
        ("payment.charge#3", "frozen", None),
        ("payment.refund#1", "frozen", None),
        ("payment.refund#2", "frozen", None),
        ("payment.refund#3", "frozen", None),
        ("inventory.release#1", "ok", None),
        ("payment.charge#1", "late", "pause seconds=30"),
        ("payment.charge#2", "late", "pause seconds=30"),
        ("payment.charge#3", "late", "pause seconds=30"),
        ("payment.refund#1", "late", "pause seconds=30"),
        ("payment.refund#2", "late", "pause seconds=30"),
        ("payment.refund#3", "late", "pause seconds=30"),
    ]
    frozen_at = execution.trace[1].time
    assert all(e.time == pytest.approx(frozen_at + 30.0) for e in execution.trace if e.outcome == "late")
    # At the thaw they land in arrival order: one charge, then its refund; the copies replay.
    assert effects(execution) == [("inventory", "reserve"), ("inventory", "release"), ("payment", "charge"), ("payment", "refund")]
    # The saga could not refund in time, so it says so rather than "compensated".
    assert execution.status == "failed"
    assert execution.faults == (Pause(P("payment.charge#1"), seconds=30.0),)


def test_a_short_pause_is_a_slow_reply_for_every_call_it_holds() -> None:
    execution = run(Pause(P("payment.charge#1"), seconds=0.5), Timeout(P("shipping.create#1")))
    charge = entries(execution, "payment.charge")
    assert [(e.outcome, e.fault) for e in charge] == [("ok", "pause seconds=0.5")]
    reserve = entries(execution, "inventory.reserve")[0]
    assert 0.5 + LATENCY[0] <= charge[0].time - reserve.time <= 0.5 + LATENCY[1]
    assert execution.status == "completed"


def test_a_call_that_thaws_within_its_timeout_is_answered_after_those_waiting_before_it() -> None:
    # Frozen for 2 s: the charge times out (1 s); the retry, after the back-off, finds payment
    # still frozen but thawing within its timeout: it waits, and is answered at the thaw, after
    # the first charge, which was waiting in it already, has landed.
    execution = run(Pause(P("payment.charge#1"), seconds=2.0))
    assert outcomes(execution, "payment.charge") == [
        (1, "frozen", "pause seconds=2"),
        (1, "late", "pause seconds=2"),
        (2, "ok", None),
    ]
    frozen, late, retry = entries(execution, "payment.charge")
    assert late.time == retry.time == pytest.approx(frozen.time + 2.0)
    (charge,) = execution.rows("payment", "charge")
    assert charge.delivery == late.seq
    assert retry.reply == late.reply
    assert execution.status == "completed"
    # Inventory, never frozen, answered at once throughout.
    assert all(e.outcome == "ok" for e in entries(execution, "inventory.reserve"))


def test_a_fault_planned_at_a_frozen_participant_does_not_happen() -> None:
    execution = run(Pause(P("payment.charge#1"), seconds=30.0), LoseReply(P("payment.charge#2")))
    assert outcomes(execution, "payment.charge")[1] == (2, "frozen", None)
    assert execution.faults == (Pause(P("payment.charge#1"), seconds=30.0),)
    assert execution.plan.faults == (Pause(P("payment.charge#1"), seconds=30.0),)


def test_pause_replays_byte_for_byte() -> None:
    plan = FaultPlan((Pause(P("payment.refund#1"), seconds=45.0), Refuse(P("shipping.create#1"))), seed=3)
    first, second = run_plan(order_saga, plan), run_plan(order_saga, FaultPlan.loads(plan.dumps()))
    assert trace_to_json(first.trace) == trace_to_json(second.trace)
    assert [e.outcome for e in first.trace].count("frozen") == 3


def test_a_compensation_outage_leaves_the_saga_failed() -> None:
    execution = run(Refuse(P("shipping.create#1")), Outage(P("payment.refund#1")))
    assert outcomes(execution, "payment.refund") == [
        (1, "failed", "outage"),
        (2, "failed", "outage"),
        (3, "failed", "outage"),
    ]
    assert execution.status == "failed"
    assert len(execution.rows("payment", "charge")) == 1
    assert execution.rows("payment", "refund") == []
    # the saga still undid what it could
    assert len(execution.rows("inventory", "release")) == 1


def test_backoff_is_virtual_time(baseline: Execution) -> None:
    execution = run(Outage(P("payment.charge#1")))
    times = [e.time for e in entries(execution, "payment.charge")]
    # back-off doubles: 0.2 s, then 0.4 s (plus latency), on the virtual clock
    assert BACKOFF + LATENCY[0] <= times[1] - times[0] <= BACKOFF + LATENCY[1]
    assert 2 * BACKOFF + LATENCY[0] <= times[2] - times[1] <= 2 * BACKOFF + LATENCY[1]


def test_timeouts_follow_the_sagas_call_timeout() -> None:
    class Svc:
        def go(self) -> str:
            return "done"

    def saga_run(services: Any, _: Any) -> str:
        for _attempt in range(3):
            try:
                services.svc.go()
                return "completed"
            except TimeoutError:
                continue
        return "failed"

    saga = Saga(
        "patient", steps=[Step("svc", "go")], participants=lambda: {"svc": Svc()}, run=saga_run, call_timeout=5.0
    )
    execution = run_plan(saga, FaultPlan((Timeout(P("svc.go#1")), LoseReply(P("svc.go#2")))))
    assert [e.outcome for e in execution.trace] == ["timed-out", "reply-lost", "ok"]
    first, second, third = execution.trace
    assert 5.0 + LATENCY[0] <= second.time - first.time <= 5.0 + LATENCY[1]
    assert 5.0 + LATENCY[0] <= third.time - second.time <= 5.0 + LATENCY[1]
    assert execution.status == "completed"


def test_callers_see_builtin_errors_with_the_point_and_fault() -> None:
    seen: list[BaseException] = []

    class Svc:
        def go(self) -> str:
            return "done"

    def saga_run(services: Any, _: Any) -> str:
        for _attempt in range(4):
            try:
                services.svc.go()
                return "completed"
            except (TimeoutError, ConnectionError) as exc:
                seen.append(exc)
        return "failed"

    saga = Saga("observant", steps=[Step("svc", "go")], participants=lambda: {"svc": Svc()}, run=saga_run)
    plan = FaultPlan((FailBeforeEffect(P("svc.go#1")), Timeout(P("svc.go#2")), LoseReply(P("svc.go#3"))))
    execution = run_plan(saga, plan)
    assert execution.status == "completed"
    assert [type(e) for e in seen] == [ConnectionRefusedError, TimeoutError, TimeoutError]
    assert "svc.go#1" in str(seen[0])
    assert "fail" in str(seen[0])
    assert "svc.go#2" in str(seen[1])
    assert "svc.go#3" in str(seen[2])
    assert "lose-reply" in str(seen[2])


def test_a_fault_at_a_point_never_reached_is_not_injected() -> None:
    execution = run(LoseReply(P("payment.refund#1")), Timeout(P("payment.charge#3")))
    assert execution.faults == ()
    assert all(e.fault is None for e in execution.trace)
    assert execution.status == "completed"


def test_execution_plan_replays_the_same_execution() -> None:
    first = run(LoseReply(P("payment.charge#1")), Delay(P("shipping.create#1"), seconds=30.0), seed=5)
    assert first.plan.seed == 5
    assert (first.plan.saga, first.plan.saga_ref) == ("order", "saga_verify.reference:order_saga")
    again = run_plan(order_saga, first.plan)
    assert trace_to_json(again.trace) == trace_to_json(first.trace)


def test_rows_filter_by_participant_and_action_in_effect_order() -> None:
    execution = run(Refuse(P("shipping.create#1")))
    rows = execution.rows()
    assert all(isinstance(r, LedgerRow) for r in rows)
    assert [r.seq for r in rows] == sorted(r.seq for r in rows)
    assert [r.action for r in execution.rows("payment")] == ["charge", "refund"]
    assert [r.participant for r in execution.rows(action="release")] == ["inventory"]
    assert execution.rows("payment", "release") == []
    assert {name: [r.action for r in rows] for name, rows in execution.ledgers.items()} == {
        "inventory": ["reserve", "release"],
        "payment": ["charge", "refund"],
        "shipping": [],
        "notification": [],
    }


def test_every_outcome_is_documented() -> None:
    seen = {
        e.outcome
        for ex in (
            run(FailBeforeEffect(P("payment.charge#1"))),
            run(Timeout(P("payment.charge#1"))),
            run(LoseReply(P("payment.charge#1"))),
            run(Duplicate(P("payment.charge#1"))),
            run(Delay(P("payment.charge#1"), seconds=30.0)),
            run(Pause(P("payment.charge#1"), seconds=30.0)),
        )
        for e in ex.trace
    }
    assert seen == {"ok", "failed", "timed-out", "reply-lost", "copy", "held", "frozen", "late"}
    assert seen <= set(OUTCOMES)


def test_run_plan_validates_the_plan_first() -> None:
    with pytest.raises(PlanError, match=r"did you mean payment\.charge"):
        run(LoseReply(P("payment.chrage#1")))
    with pytest.raises(PlanError, match="declares no refusal"):
        run(Refuse(P("notification.send#1")))
