"""Effects observed without the middleware: through the service's event feed and through a reader
of its store, read right after each delivery, with the service reset by the declaration's
``reset`` at the start of every execution. The service (fixtures/observed) imports nothing of
saga-verify."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest

from saga_verify import FaultPlan, Saga, Step, explore, run_plan
from saga_verify.systems import EventFeed, Service, ServiceHandle, ServiceLostError, StoreReader, System

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "observed"
NO_DB = hypothesis.settings(database=None)


@pytest.fixture(autouse=True)
def _importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(FIXTURE))


def _read_store(handle: ServiceHandle) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = handle.get("/store").json()
    return rows


def _service(effects: Any, runtime: str) -> Service:
    command = [sys.executable, "-m", "uvicorn", "--app-dir", str(FIXTURE), "observed:app", "--host", "{host}", "--port", "{port}"]
    return Service(
        "payment",
        routes={"charge": "POST /charges", "refund": "POST /refunds"},
        app=_fresh_app if runtime == "asgi" else None,
        command=command if runtime == "process" else None,
        ready="/ready",
        effects=effects,
        reset="POST /test/reset",
    )


def _fresh_app() -> Any:
    import observed

    return observed.create_app()


def _charge(keyed: bool) -> Any:
    def run(services: Any, order: Any) -> str:
        headers = {"Idempotency-Key": "o-1:charge"} if keyed else {}
        for _ in range(3):
            try:
                services.payment.post("/charges", json={"order_id": "o-1", "amount": 100}, headers=headers)
                return "completed"
            except httpx.TransportError:
                continue
        return "failed"

    return run


OBSERVATIONS = {
    "feed": EventFeed({"payment.charged": "charge"}, ref="charge_id"),
    "store": StoreReader(_read_store),
}


def _saga(how: str, runtime: str, keyed: bool) -> Saga:
    return Saga(
        f"charge-{how}",
        steps=[Step("payment", "charge", "refund")],
        participants=System(_service(OBSERVATIONS[how], runtime)),
        run=_charge(keyed),
        input={"order_id": "o-1"},
    )


@pytest.mark.parametrize("runtime", ["asgi", "process"])
@pytest.mark.parametrize("how", sorted(OBSERVATIONS))
def test_effects_are_read_after_each_delivery_and_stamped_with_it(how: str, runtime: str) -> None:
    plan = FaultPlan.loads('{"faults": [{"kind": "lose-reply", "at": "payment.charge#1"}]}')
    execution = run_plan(_saga(how, runtime, keyed=False), plan, runtime=runtime)
    charges = execution.rows("payment", "charge")
    # Two charges (the retry charged again), each stamped with the delivery that caused it.
    assert [(r.delivery, r.amount, r.correlation_id) for r in charges] == [(0, 100, "o-1"), (1, 100, "o-1")]
    if how == "feed":
        assert [r.ref for r in charges] == ["ch-1", "ch-2"]


@pytest.mark.parametrize("runtime", ["asgi", "process"])
@pytest.mark.parametrize("how", sorted(OBSERVATIONS))
def test_the_search_catches_the_unkeyed_charge_and_passes_the_keyed_one(how: str, runtime: str, tmp_path: Path) -> None:
    broken = explore(_saga(how, runtime, keyed=False), settings=NO_DB, report_dir=tmp_path, max_examples=0, sweep_faults=1, runtime=runtime)
    (failure, *_) = broken.failures
    assert str(failure.plan) == "lose-reply at payment.charge#1"
    assert failure.invariants == ("no_double_charge",)
    fixed = explore(_saga(how, runtime, keyed=True), settings=NO_DB, report_dir=tmp_path, max_examples=0, sweep_faults=1, runtime=runtime)
    assert fixed.ok  # the reset made every execution start afresh: nothing leaked between them


def test_a_store_reader_that_raises_ends_the_search_naming_the_service() -> None:
    def broken(handle: ServiceHandle) -> list[dict[str, Any]]:
        raise KeyError("charges")

    saga = Saga(
        "unreadable",
        steps=[Step("payment", "charge", "refund")],
        participants=System(
            Service("payment", routes={"charge": "POST /charges", "refund": "POST /refunds"}, app=_fresh_app, effects=StoreReader(broken), reset="POST /test/reset")
        ),
        run=_charge(keyed=True),
    )
    with pytest.raises(ServiceLostError, match=r"the effect reader of the payment service raised KeyError: 'charges'"):
        run_plan(saga, runtime="asgi")


def test_a_reset_that_fails_ends_the_search_naming_the_service() -> None:
    saga = Saga(
        "unresettable",
        steps=[Step("payment", "charge", "refund")],
        participants=System(
            Service("payment", routes={"charge": "POST /charges", "refund": "POST /refunds"}, app=_fresh_app, effects=OBSERVATIONS["feed"], reset="POST /nowhere")
        ),
        run=_charge(keyed=True),
    )
    with pytest.raises(ServiceLostError, match=r"the reset of the payment service \(POST /nowhere\) answered 404"):
        run_plan(saga, runtime="asgi")
