"""The virtual clock and the ledgers, alone and inside an execution."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

from saga_verify import FaultPlan, Ledger, LedgerRow, Saga, Step, run_plan
from saga_verify._world import Services, VirtualClock
from saga_verify.errors import SagaDefinitionError
from saga_verify.faults import DeliveryPoint, Duplicate, LoseReply, Timeout
from saga_verify.invariants import check, terminates

P = DeliveryPoint.parse


# -- the clock ---------------------------------------------------------------------------------


def test_clock_starts_at_zero_and_sleep_advances_it() -> None:
    clock = VirtualClock()
    assert clock.now() == 0.0
    clock.sleep(1.5)
    clock.sleep(0)
    clock.sleep(2)
    assert clock.now() == 3.5
    assert repr(clock) == "VirtualClock(now=3.500)"


def test_clock_reports_each_advance() -> None:
    seen: list[float] = []
    clock = VirtualClock(seen.append)
    clock.sleep(1.0)
    clock.sleep(0.25)
    assert seen == [1.0, 1.25]


def test_asleep_advances_the_same_clock() -> None:
    clock = VirtualClock()
    asyncio.run(clock.asleep(4.0))
    assert clock.now() == 4.0


@pytest.mark.parametrize("bad", [-1, -0.001, math.nan, math.inf, True, "1", None])
def test_sleep_rejects_what_is_not_a_duration(bad: Any) -> None:
    clock = VirtualClock()
    with pytest.raises(SagaDefinitionError) as info:
        clock.sleep(bad)
    assert repr(bad) in str(info.value)
    assert "clock.sleep()" in str(info.value)
    assert clock.now() == 0.0


class Svc:
    def __init__(self) -> None:
        self.ledger = Ledger()

    def go(self, *, idempotency_key: str | None = None) -> str:
        self.ledger.record("go", 2.5, "g-1")
        return "done"

    def undo(self, *, idempotency_key: str | None = None) -> str:
        self.ledger.record("undo", 2.5, "g-1", correlation_id="someone-else")
        return "undone"


def saga_of(run: Any, **options: Any) -> Saga:
    return Saga(
        "svc-saga",
        steps=[Step("svc", "go", compensation="undo")],
        participants=lambda: {"svc": Svc()},
        run=run,
        **options,
    )


def test_the_sagas_clock_is_the_worlds_clock() -> None:
    times: list[float] = []

    def run(services: Services, _: Any) -> str:
        times.append(services.clock.now())
        services.clock.sleep(100.0)
        times.append(services.clock.now())
        services.svc.go()
        times.append(services.clock.now())
        return "completed"

    execution = run_plan(saga_of(run))
    assert times[0] == 0.0
    assert times[1] == 100.0
    assert 100.010 <= times[2] <= 100.015
    assert execution.trace[0].time == times[2]
    assert execution.elapsed == times[2]


def test_async_sagas_sleep_on_the_virtual_clock_too() -> None:
    seen: list[float] = []

    async def run(services: Services, _: Any) -> str:
        await services.clock.asleep(50.0)
        seen.append(services.clock.now())
        return "completed"

    execution = run_plan(saga_of(run))
    assert execution.status == "completed"
    assert seen == [50.0]


def test_a_saga_sleeping_past_max_seconds_is_halted() -> None:
    def run(services: Services, _: Any) -> str:
        while True:
            try:
                services.clock.sleep(60.0)
            except Exception:  # the halt cannot be swallowed by saga code
                continue

    execution = run_plan(saga_of(run, max_seconds=600.0))
    assert execution.status == "halted"
    assert execution.halted == "still running after 600 virtual seconds"
    assert execution.result is None
    violations = check(execution, [terminates])
    assert [v.invariant for v in violations] == ["terminates"]
    assert "did not finish" in violations[0].message


def test_a_saga_making_too_many_calls_is_halted() -> None:
    def run(services: Services, _: Any) -> str:
        while True:
            services.svc.go()

    execution = run_plan(saga_of(run, max_deliveries=7))
    assert execution.status == "halted"
    assert execution.halted == "made more than 7 calls"
    assert len(execution.trace) == 7
    assert len(execution.rows()) == 7


def test_a_timeout_counts_against_max_seconds() -> None:
    def run(services: Services, _: Any) -> str:
        for _attempt in range(10):
            try:
                services.svc.go()
                return "completed"
            except TimeoutError:
                continue
        return "failed"

    faults = tuple(Timeout(P(f"svc.go#{n}")) for n in range(1, 11))
    execution = run_plan(saga_of(run, max_seconds=3.5, call_timeout=1.0), FaultPlan(faults))
    assert execution.status == "halted"
    assert "3.5 virtual seconds" in (execution.halted or "")


# -- ledgers -----------------------------------------------------------------------------------


def test_a_ledger_outside_an_execution() -> None:
    ledger = Ledger()
    first = ledger.record("charge", 100, "ch-1", correlation_id="order-1")
    second = ledger.record("refund")
    assert list(ledger) == [first, second]
    assert len(ledger) == 2
    assert first == LedgerRow("", 0, 0.0, "order-1", "charge", 100, "ch-1", -1)
    assert (second.seq, second.amount, second.ref, second.correlation_id, second.delivery) == (1, 1.0, None, "", -1)


def test_ledger_rows_print_for_people() -> None:
    row = LedgerRow("payment", 3, 1.23456, "order-1", "charge", 100.0, "ch-1", 4)
    assert str(row) == "payment: charge 100 ch-1 for order-1 at t=1.235 (delivery #4)"
    row = LedgerRow("payment", 3, 0.0, "order-1", "charge", 99.5, None, -1)
    assert str(row) == "payment: charge 99.5 for order-1 at t=0.000"


def test_an_execution_stamps_rows_with_participant_time_delivery_and_saga() -> None:
    def run(services: Services, _: Any) -> str:
        services.svc.go(idempotency_key="k")
        services.clock.sleep(5)
        services.svc.undo()
        return "compensated"

    execution = run_plan(saga_of(run, input={"order_id": "order-42"}))
    go, undo = execution.rows()
    assert go.participant == undo.participant == "svc"
    assert (go.seq, undo.seq) == (0, 1)
    assert go.delivery == execution.trace[0].seq
    assert undo.delivery == execution.trace[1].seq
    assert go.time == execution.trace[0].time
    assert undo.time == execution.trace[1].time
    assert undo.time - go.time >= 5
    assert go.correlation_id == "order-42"  # from the input's order_id
    assert undo.correlation_id == "someone-else"  # a participant may say whose effect it is
    assert (go.action, go.amount, go.ref) == ("go", 2.5, "g-1")
    assert execution.ledgers["svc"] == (go, undo)


def test_row_sequence_runs_across_participants() -> None:
    class Other:
        def __init__(self) -> None:
            self.ledger = Ledger()

        def poke(self) -> str:
            self.ledger.record("poke")
            return "ok"

    def run(services: Services, _: Any) -> str:
        services.svc.go()
        services.other.poke()
        services.svc.go()
        return "completed"

    saga = Saga(
        "two",
        steps=[Step("svc", "go", compensation="undo"), Step("other", "poke")],
        participants=lambda: {"svc": Svc(), "other": Other()},
        run=run,
    )
    execution = run_plan(saga)
    assert [(r.participant, r.seq) for r in execution.rows()] == [("svc", 0), ("other", 1), ("svc", 2)]


def test_the_correlation_id_defaults_and_overrides() -> None:
    def run(services: Services, _: Any) -> str:
        services.svc.go()
        return "completed"

    assert run_plan(saga_of(run)).rows()[0].correlation_id == "svc-saga"  # no order id: the saga's name
    assert run_plan(saga_of(run, input={"order_id": 7})).rows()[0].correlation_id == "svc-saga"  # not text
    execution = run_plan(saga_of(run, input={"order_id": "o-1"}, correlation_id="instance-9"))
    assert execution.correlation_id == "instance-9"
    assert execution.rows()[0].correlation_id == "instance-9"
    assert execution.trace[0].correlation_id == "instance-9"


def test_rows_of_a_lost_reply_and_a_copy_point_at_their_own_deliveries() -> None:
    def run(services: Services, _: Any) -> str:
        for _attempt in range(2):
            try:
                services.svc.go()
            except TimeoutError:
                continue
            return "completed"
        return "failed"

    plan = FaultPlan((LoseReply(P("svc.go#1")), Duplicate(P("svc.go#2"))))
    execution = run_plan(saga_of(run), plan)
    assert [e.outcome for e in execution.trace] == ["reply-lost", "ok", "copy"]
    # Svc is not idempotent: three deliveries, three effects, each tied to its delivery
    assert [r.delivery for r in execution.rows()] == [0, 1, 2]


def test_each_execution_gets_fresh_participants_and_ledgers() -> None:
    def run(services: Services, _: Any) -> str:
        services.svc.go()
        return "completed"

    saga = saga_of(run)
    a, b = run_plan(saga), run_plan(saga)
    assert len(a.rows()) == len(b.rows()) == 1
    assert a.participants["svc"] is not b.participants["svc"]
