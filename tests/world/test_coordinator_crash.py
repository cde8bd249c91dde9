"""A coordinator crash stops the saga's code at a delivery point, before the request goes out or
after it was applied; a fresh coordinator, with fresh services and the store as it was, recovers.
The dead coordinator goes no further, whatever its code catches; sync and async sagas alike."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from saga_verify import Durable, FaultPlan, Ledger, Saga, Step, run_plan
from saga_verify._world import trace_to_json
from saga_verify.errors import PlanError, RecoveryError, SagaDefinitionError
from saga_verify.faults import CoordinatorCrashAfter, CoordinatorCrashBefore, DeliveryPoint, templates_for

ORDER = {"order_id": "o-1", "amount": 100}


class Payment:
    """Charges once per key; refunds what it charged."""

    def __init__(self) -> None:
        self.ledger = Ledger()
        self.seen: dict[str, dict[str, str]] = {}
        self.declining = False

    def charge(self, *, amount: int, idempotency_key: str) -> dict[str, str]:
        if idempotency_key in self.seen:
            return self.seen[idempotency_key]
        if self.declining:
            self.declining = False
            return {"status": "declined"}
        self.ledger.record("charge", amount)
        self.seen[idempotency_key] = {"status": "ok"}
        return {"status": "ok"}

    def refund(self, *, amount: int, idempotency_key: str) -> dict[str, str]:
        if idempotency_key not in self.seen:
            self.ledger.record("refund", amount)
            self.seen[idempotency_key] = {"status": "ok"}
        return {"status": "ok"}


class Ship:
    def __init__(self) -> None:
        self.ledger = Ledger()

    def create(self, *, idempotency_key: str) -> dict[str, str]:
        return {"status": "no"}  # never ships: the saga must compensate

    def cancel(self, *, idempotency_key: str) -> dict[str, str]:
        return {"status": "ok"}


def _decline(payment: Payment) -> None:
    payment.declining = True


STEPS = [Step("payment", "charge", "refund", refuse=_decline), Step("shipping", "create", "cancel")]


def _participants() -> dict[str, Any]:
    return {"payment": Payment(), "shipping": Ship()}


class Store:
    """A durable store as a dict; ``reopened`` counts the harness's reopen calls."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.reopened = 0
        self.closed = False


def _reopen(store: Store) -> Store:
    store.reopened += 1
    return store


#: Every services object a coordinator was given, in order.
SEEN: list[Any] = []


def run(services: Any, order: dict[str, Any]) -> str:
    """Charge (the key from the store), then ship; on a refusal or a failed shipment, refund.
    What it did is written to the store after each call: it resumes by running again."""
    SEEN.append(services)
    log = services.store.data
    if "status" in log:
        return str(log["status"])
    if log.get("charge") != "ok":
        reply = services.payment.charge(amount=order["amount"], idempotency_key="k-charge")
        if reply["status"] != "ok":
            log["status"] = "compensated"
            return "compensated"
        log["charge"] = "ok"
    if log.get("phase") != "compensating" and services.shipping.create(idempotency_key="k-ship")["status"] == "ok":
        log["status"] = "completed"
        return "completed"
    log["phase"] = "compensating"
    services.payment.refund(amount=order["amount"], idempotency_key="k-refund")
    log["status"] = "compensated"
    return "compensated"


def _saga(**durable: Any) -> Saga:
    options = {"store": Store, "reopen": _reopen, **durable}
    return Saga("durable-test", STEPS, _participants, run, input=ORDER, durable=Durable(**options))


def _plan(*faults: Any) -> FaultPlan:
    return FaultPlan(tuple(faults))


def _at(point: str) -> DeliveryPoint:
    return DeliveryPoint.parse(point)


def test_a_crash_before_sending_leaves_no_effect_and_a_fresh_coordinator_recovers() -> None:
    SEEN.clear()
    execution = run_plan(_saga(), _plan(CoordinatorCrashBefore(_at("payment.charge#1"))))
    assert [(e.point, e.outcome) for e in execution.trace][:2] == [("payment.charge#1", "unsent"), ("payment.charge#2", "ok")]
    assert [r.action for r in execution.rows()] == ["charge", "refund"]
    assert execution.status == "compensated"
    # Two coordinators, each with services of its own, over the one store.
    assert len(SEEN) == 2
    assert SEEN[0] is not SEEN[1]
    assert SEEN[0].store is not SEEN[1].store
    assert SEEN[1].payment is SEEN[0].payment


def test_a_crash_after_the_participant_applied_it_hides_the_reply() -> None:
    execution = run_plan(_saga(), _plan(CoordinatorCrashAfter(_at("payment.charge#1"))))
    first = execution.trace[0]
    assert (first.point, first.outcome, first.reply) == ("payment.charge#1", "unread", {"status": "ok"})
    # Applied once, retried by the recovering coordinator under the same key: one charge.
    assert [r.action for r in execution.rows()] == ["charge", "refund"]
    assert execution.rows()[0].delivery == 0


def test_the_store_is_reopened_once_per_crash_and_closed_at_the_end() -> None:
    stores: list[Store] = []

    def opened() -> Store:
        stores.append(Store())
        return stores[-1]

    def close(store: Store) -> None:
        store.closed = True

    plan = _plan(CoordinatorCrashAfter(_at("payment.charge#1")), CoordinatorCrashBefore(_at("payment.charge#2")))
    execution = run_plan(_saga(store=opened, close=close), plan)
    assert len(stores) == 1
    assert stores[0].reopened == 2
    assert stores[0].closed
    assert execution.status == "compensated"


def test_several_crashes_in_one_plan_hit_recovery_and_compensation() -> None:
    # Crash at the first charge, again at the recovery's retry of it, then twice in the
    # compensation (before the refund goes out, and after it was applied).
    plan = _plan(
        CoordinatorCrashAfter(_at("payment.charge#1")),
        CoordinatorCrashAfter(_at("payment.charge#2")),
        CoordinatorCrashBefore(_at("payment.refund#1")),
        CoordinatorCrashAfter(_at("payment.refund#2")),
    )
    execution = run_plan(_saga(), plan)
    outcomes = [(e.point, e.outcome) for e in execution.trace]
    assert outcomes == [
        ("payment.charge#1", "unread"),
        ("payment.charge#2", "unread"),
        ("payment.charge#3", "ok"),
        ("shipping.create#1", "ok"),
        ("payment.refund#1", "unsent"),
        ("payment.refund#2", "unread"),
        ("payment.refund#3", "ok"),
    ]
    assert [r.action for r in execution.rows()] == ["charge", "refund"]
    assert execution.status == "compensated"


def run_swallowing(services: Any, order: dict[str, Any]) -> str:
    """Catches everything, the coordinator's death included, and goes on as if alive."""
    if services.store.data.get("recovering"):
        return "completed"
    services.store.data["recovering"] = True
    for key in ("k-1", "k-2"):
        try:
            services.payment.charge(amount=1, idempotency_key=key)
        except BaseException:
            pass
    try:
        services.clock.sleep(5)
    except BaseException:
        pass
    try:
        services.store.data["written after death"] = True
    except BaseException:
        pass
    return "completed"


def test_a_dead_coordinator_that_catches_base_exception_goes_no_further() -> None:
    saga = Saga("swallows", STEPS, _participants, run_swallowing, input=ORDER, durable=Durable(store=Store))
    execution = run_plan(saga, _plan(CoordinatorCrashAfter(_at("payment.charge#1"))))
    # Its second charge never went out, its sleep did not pass, its write after death was refused.
    assert [(e.point, e.outcome) for e in execution.trace] == [("payment.charge#1", "unread")]
    assert len(execution.rows()) == 1
    assert execution.elapsed < 5
    assert execution.status == "completed"  # what the fresh coordinator said


async def arun(services: Any, order: dict[str, Any]) -> str:
    log = services.store.data
    if log.get("charged"):
        return "completed"
    try:
        await asyncio.gather(asyncio.sleep(0), _charge(services, "k-a"))
    except BaseException:
        await asyncio.sleep(3)  # a dead coordinator's loop stops here
        services.payment.charge(amount=1, idempotency_key="k-after")
    log["charged"] = True
    return "completed"


async def _charge(services: Any, key: str) -> None:
    services.payment.charge(amount=1, idempotency_key=key)


@pytest.mark.parametrize("fault", [CoordinatorCrashBefore, CoordinatorCrashAfter])
def test_an_async_saga_is_stopped_and_recovered_too(fault: type) -> None:
    saga = Saga("async-durable", STEPS, _participants, arun, input=ORDER, durable=Durable(store=Store))
    execution = run_plan(saga, _plan(fault(_at("payment.charge#1"))))
    # The dead coordinator's sleep and its charge after it never happened; the fresh one charged.
    assert [(e.outcome, e.key) for e in execution.trace] == [("unsent" if fault is CoordinatorCrashBefore else "unread", "k-a"), ("ok", "k-a")]
    assert execution.elapsed < 3
    assert "k-after" not in {e.key for e in execution.trace}
    assert execution.status == "completed"


def test_recover_runs_instead_of_run_on_a_fresh_coordinator() -> None:
    calls: list[str] = []

    def recover(services: Any, order: dict[str, Any]) -> str:
        calls.append("recover")
        services.payment.refund(amount=order["amount"], idempotency_key="k-refund")
        return "compensated"

    execution = run_plan(_saga(recover=recover), _plan(CoordinatorCrashAfter(_at("payment.charge#1"))))
    assert calls == ["recover"]
    assert [r.action for r in execution.rows()] == ["charge", "refund"]
    assert execution.status == "compensated"


def test_the_same_plan_gives_the_same_trace() -> None:
    plan = FaultPlan((CoordinatorCrashAfter(_at("payment.charge#1")), CoordinatorCrashBefore(_at("payment.refund#1"))), seed=7)
    first, second = run_plan(_saga(), plan), run_plan(_saga(), plan)
    assert trace_to_json(first.trace) == trace_to_json(second.trace)


def test_only_durable_sagas_take_coordinator_crashes() -> None:
    plain = dataclasses.replace(_saga(), durable=None)
    with pytest.raises(PlanError, match=r"plan crashes the coordinator at payment.charge#1, but saga 'durable-test' declares no durable store"):
        run_plan(plain, _plan(CoordinatorCrashBefore(_at("payment.charge#1"))))
    kinds = {t.cls.kind for t in templates_for(plain, "payment", "charge")}
    assert not kinds & {"coordinator-crash-before", "coordinator-crash-after"}
    kinds = {t.cls.kind for t in templates_for(_saga(), "payment", "charge")}
    assert kinds >= {"coordinator-crash-before", "coordinator-crash-after"}


def test_coordinator_crashes_round_trip_through_plan_files(tmp_path) -> None:
    plan = FaultPlan((CoordinatorCrashBefore(_at("payment.charge#1")), CoordinatorCrashAfter(_at("payment.refund#2"))), seed=3)
    path = plan.save(tmp_path / "plan.json")
    assert FaultPlan.load(path) == plan
    assert str(plan) == "coordinator-crash-before at payment.charge#1; coordinator-crash-after at payment.refund#2"
    with pytest.raises(PlanError, match=r"coordinator-crash-after takes no field\(s\) \['seconds'\]"):
        FaultPlan.from_json({"faults": [{"kind": "coordinator-crash-after", "at": "payment.charge#1", "seconds": 1}]})


# -- bad input: never a silent fresh start ------------------------------------------------------
def test_a_recover_that_raises_is_a_recovery_error_naming_it() -> None:
    def recover(services: Any, order: dict[str, Any]) -> str:
        raise ValueError("log unreadable")

    with pytest.raises(
        RecoveryError,
        match=r"saga 'durable-test': recover raised ValueError: log unreadable while recovering after the coordinator crash at payment.charge#1",
    ):
        run_plan(_saga(recover=recover), _plan(CoordinatorCrashAfter(_at("payment.charge#1"))))


def test_a_store_that_does_not_open_or_reopen_is_a_recovery_error() -> None:
    def broken_store() -> Store:
        raise OSError("disk gone")

    with pytest.raises(RecoveryError, match=r"saga 'durable-test': its durable store did not open: OSError: disk gone"):
        run_plan(_saga(store=broken_store))

    def broken_reopen(store: Store) -> Store:
        raise OSError("file truncated")

    with pytest.raises(
        RecoveryError,
        match=r"its durable store did not reopen after the coordinator crash at payment.charge#1: OSError: file truncated",
    ):
        run_plan(_saga(reopen=broken_reopen), _plan(CoordinatorCrashBefore(_at("payment.charge#1"))))


def test_durable_is_checked_where_the_saga_is_made() -> None:
    with pytest.raises(SagaDefinitionError, match="Durable store= must be callable"):
        Durable(store="sqlite:///x")  # type: ignore[arg-type]
    with pytest.raises(SagaDefinitionError, match=r"durable must be a saga_verify\.Durable"):
        Saga("x", STEPS, _participants, run, durable={"store": Store})  # type: ignore[arg-type]
    with pytest.raises(SagaDefinitionError, match="participant name 'store' is reserved"):
        Saga("x", [Step("store", "put")], dict, run, durable=Durable(store=Store))
