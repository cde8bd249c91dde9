"""The clocks a saga's libraries read follow the execution's virtual clock: ``time.sleep``,
``time.monotonic``, ``time.time``, ``datetime.now`` (names bound by ``from ... import`` too) and
``asyncio.sleep``. Nothing really waits, what is read is the same on every run of a plan, and
other threads, code outside executions and sagas that turn it off see the real clocks."""

from __future__ import annotations

import asyncio
import datetime
import importlib
import sys
import threading
import time
from pathlib import Path
from typing import Any

import clock_library
import hypothesis
import pytest

from saga_verify import FaultPlan, Ledger, Saga, Step, explore, run_plan
from saga_verify._world._clocks import EPOCH, MONOTONIC_START
from saga_verify.faults import DeliveryPoint, FailBeforeEffect, Outage

STEPS = [Step("payment", "charge", "refund")]
ORDER = {"order_id": "o-1", "amount": 100}


class Payment:
    def __init__(self) -> None:
        self.ledger = Ledger()
        self.seen: dict[str, Any] = {}

    def charge(self, amount: int, idempotency_key: str, at: str | None = None) -> dict[str, Any]:
        if idempotency_key not in self.seen:
            self.seen[idempotency_key] = at
            self.ledger.record("charge", amount)
        return {"status": "ok", "at": self.seen[idempotency_key]}

    def refund(self, amount: int, idempotency_key: str) -> dict[str, Any]:
        self.ledger.record("refund", amount)
        return {"status": "ok"}


def _saga(run: Any, name: str = "clocks", **options: Any) -> Saga:
    return Saga(name, steps=STEPS, participants=lambda: {"payment": Payment()}, run=run, input=ORDER, **options)


def _no_db() -> hypothesis.settings:
    return hypothesis.settings(database=None)


def _retrying(services: Any, order: Any) -> str:
    """Retries with the library's back-off, until a deadline read from the library's clock."""
    give_up = clock_library.deadline(60.0)
    attempt = 0
    while not clock_library.expired(give_up):
        try:
            services.payment.charge(amount=order["amount"], idempotency_key="o-1:charge")
            return "completed"
        except ConnectionError:
            attempt += 1
            clock_library.backoff(attempt)
    return "failed"


def test_a_library_back_off_waits_on_the_virtual_clock() -> None:
    # Two failures: back-offs of 2 and 4 seconds, which used to really pass.
    plan = FaultPlan((FailBeforeEffect(DeliveryPoint("payment", "charge", 1)), FailBeforeEffect(DeliveryPoint("payment", "charge", 2))))
    execution = run_plan(_saga(_retrying), plan)
    assert execution.status == "completed"
    times = [e.time for e in execution.trace]
    assert times[1] - times[0] == pytest.approx(2.0, abs=0.02)
    assert times[2] - times[1] == pytest.approx(4.0, abs=0.02)


def test_a_deadline_on_the_library_clock_ends_a_retry_loop_in_virtual_time() -> None:
    execution = run_plan(_saga(_retrying), FaultPlan((Outage(DeliveryPoint("payment", "charge", 1)),)))
    assert execution.status == "failed"
    assert 60.0 <= execution.elapsed < 100.0
    # Calls at about 0, 2, 6, 12, 20, 30, 42 and 56 s; the next back-off (16 s) ends past the deadline.
    assert len(execution.trace) == 8


def test_every_library_clock_reads_the_virtual_time() -> None:
    seen: list[tuple[float, dict[str, Any]]] = []

    def run(services: Any, order: Any) -> str:
        clock_library.pause(90.0)
        seen.append((services.clock.now(), clock_library.readings()))
        services.payment.charge(amount=order["amount"], idempotency_key="k")
        return "completed"

    run_plan(_saga(run))
    ((virtual, read),) = seen
    assert virtual == 90.0
    assert read["time"] == read["now"] == EPOCH + 90.0
    assert read["time_ns"] == (EPOCH + 90) * 10**9
    assert read["monotonic"] == MONOTONIC_START + 90.0
    assert read["monotonic_ns"] == round((MONOTONIC_START + 90.0) * 1e9)
    assert read["utc"] == datetime.datetime(2025, 1, 1, 0, 1, 30, tzinfo=datetime.UTC)
    assert read["local"] == datetime.datetime.fromtimestamp(EPOCH + 90.0)
    assert read["today"] == datetime.date.fromtimestamp(EPOCH + 90.0)


def test_a_saga_that_stamps_its_requests_with_the_wall_clock_is_deterministic() -> None:
    def run(services: Any, order: Any) -> str:
        stamp = datetime.datetime.now(datetime.UTC).isoformat()
        services.payment.charge(amount=order["amount"], idempotency_key="k", at=stamp)
        return "completed"

    # It used to be refused as nondeterministic: the two fault-free runs sent different times.
    result = explore(_saga(run, name="stamps"), settings=_no_db(), report_dir=None, sweep_faults=0, max_examples=0)
    assert result.ok
    assert result.executions == 2
    assert run_plan(_saga(run)).trace[0].request["at"] == "2025-01-01T00:00:00+00:00"


def test_async_sleeps_and_timeouts_run_on_the_virtual_clock() -> None:
    seen: dict[str, float] = {}

    async def run(services: Any, order: Any) -> str:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(3600.0 - 1.0)
        seen["loop"] = loop.time()
        try:
            await asyncio.wait_for(loop.create_future(), timeout=0.5)
        except TimeoutError:
            seen["timed out at"] = services.clock.now()
        services.payment.charge(amount=order["amount"], idempotency_key="k")
        return "completed"

    execution = run_plan(_saga(run, max_seconds=7200.0))
    assert execution.status == "completed"
    assert seen["loop"] == MONOTONIC_START + 3599.0
    assert seen["timed out at"] == pytest.approx(3599.5)
    assert execution.trace[0].time == pytest.approx(3599.51, abs=0.006)


def test_a_saga_can_keep_real_clocks() -> None:
    seen: list[dict[str, Any]] = []

    def run(services: Any, order: Any) -> str:
        clock_library.pause(0)
        seen.append(clock_library.readings())
        services.payment.charge(amount=order["amount"], idempotency_key="k")
        return "completed"

    before = time.time()
    run_plan(_saga(run, virtual_time=False))
    after = time.time()
    ((read,),) = [seen]
    assert before <= read["time"] <= after


def test_other_threads_and_code_outside_executions_keep_real_clocks() -> None:
    seen: dict[str, float] = {}

    def run(services: Any, order: Any) -> str:
        clock_library.pause(30.0)
        seen["saga"] = time.time()

        def elsewhere() -> None:
            seen["thread"] = time.time()
            seen["thread monotonic"] = clock_library.deadline(0.0)

        helper = threading.Thread(target=elsewhere)
        helper.start()
        helper.join()
        services.payment.charge(amount=order["amount"], idempotency_key="k")
        return "completed"

    before = time.time()
    run_plan(_saga(run))
    assert seen["saga"] == EPOCH + 30.0
    assert before <= seen["thread"] <= time.time()
    assert abs(seen["thread monotonic"] - time.monotonic()) < 3600  # the real clock, not 100,030
    assert abs(clock_library.readings()["time"] - time.time()) < 3600  # type: ignore[operator]


def test_executions_in_two_threads_each_read_their_own_clock() -> None:
    seen: dict[str, float] = {}
    both = threading.Barrier(2)

    def sleeper(seconds: float) -> Any:
        def run(services: Any, order: Any) -> str:
            both.wait()  # both executions run at once
            clock_library.pause(seconds)
            both.wait()
            seen[f"{seconds:g}"] = time.time()
            services.payment.charge(amount=order["amount"], idempotency_key="k")
            return "completed"

        return run

    threads = [threading.Thread(target=run_plan, args=(_saga(sleeper(s), name=f"s{s:g}"),)) for s in (10.0, 20.0)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {"10": EPOCH + 10.0, "20": EPOCH + 20.0}


def test_a_library_imported_after_the_first_execution_is_on_the_virtual_clock_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_plan(_saga(_retrying))  # the switch is engaged before the new library exists
    (tmp_path / "late_library.py").write_text("from time import monotonic, sleep\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    late = importlib.import_module("late_library")
    seen: list[float] = []

    def run(services: Any, order: Any) -> str:
        late.sleep(5.0)
        seen.append(late.monotonic())
        services.payment.charge(amount=order["amount"], idempotency_key="k")
        return "completed"

    try:
        assert run_plan(_saga(run)).trace[0].time == pytest.approx(5.011, abs=0.006)
        assert seen == [MONOTONIC_START + 5.0]
    finally:
        sys.modules.pop("late_library", None)
