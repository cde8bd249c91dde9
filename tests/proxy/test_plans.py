"""A fault plan played at a proxy in front of a real payment service process: each planned fault
happens at its planned attempt of its operation, and nowhere else."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from saga_verify import FaultPlan
from saga_verify._runtimes._process import ServiceProcess
from saga_verify.errors import OptionError, PlanError
from saga_verify.proxy import FaultProxy, PlanAtProxies, routes_from_openapi

ROOT = Path(__file__).resolve().parents[2]
PAYMENT_ROUTES = routes_from_openapi(ROOT / "contracts" / "openapi" / "payment.yaml")


@dataclass
class Frozen:
    """The payment process behind its proxy; ``pause`` stops the process (SIGSTOP), as a paused
    container's processes are stopped."""

    process: ServiceProcess
    proxy: FaultProxy

    def pause(self) -> None:
        assert self.process.pid is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def unpause(self) -> None:
        assert self.process.pid is not None
        os.kill(self.process.pid, signal.SIGCONT)


#: The reference payment service with its inspection endpoints, on a port the runner picks.
PAYMENT_COMMAND = [sys.executable, "-m", "saga_verify.reference.services", "--service", "payment", "--host", "{host}", "--port", "{port}", "--inspect"]


@pytest.fixture(scope="module")
def service() -> Iterator[ServiceProcess]:
    process = ServiceProcess("payment", PAYMENT_COMMAND, ready="/health").start()
    yield process
    process.stop()


@pytest.fixture
def payment(service: ServiceProcess) -> Iterator[Frozen]:
    httpx.post(f"{service.url}/_inspect/reset").raise_for_status()
    with FaultProxy(service.url) as proxy:
        yield Frozen(service, proxy)


def plan(text: str) -> FaultPlan:
    return FaultPlan.loads(f'{{"faults": {text}}}')


def charge(payment: Frozen, key: str = "o-1:charge", timeout: float = 5.0) -> httpx.Response:
    return httpx.post(f"{payment.proxy.url}/charges", json={"order_id": "o-1", "amount": 100}, headers={"Idempotency-Key": key}, timeout=timeout)


def charges(payment: Frozen) -> int:
    rows = httpx.get(f"{payment.process.url}/_inspect/ledger").json()
    return sum(1 for row in rows if row["action"] == "charge")


def test_routes_come_from_the_operation_ids() -> None:
    assert PAYMENT_ROUTES == {
        ("POST", "/charges"): "charge",
        ("POST", "/refunds"): "refund",
        ("GET", "/events"): "events",
        ("GET", "/health"): "health",
    }
    order = routes_from_openapi(ROOT / "contracts" / "openapi" / "order.yaml")
    assert order[("GET", "/orders/{order_id}")] == "order"


def test_a_lost_reply_hits_its_attempt_only(payment: Frozen) -> None:
    with PlanAtProxies(plan('[{"kind": "lose-reply", "at": "payment.charge#1"}]'), {"payment": payment}, {"payment": PAYMENT_ROUTES}) as played:
        with pytest.raises(httpx.RemoteProtocolError):
            charge(payment)
        assert charges(payment) == 1  # applied, though the caller never heard
        retry = charge(payment)
        assert (retry.status_code, retry.headers.get("Idempotency-Replayed")) == (201, "true")
    assert [(str(a.fault), a.attempt, a.action) for a in played.applied] == [("lose-reply at payment.charge#1", 1, "drop-response")]
    assert played.missed() == []


def test_an_outage_drops_its_attempt_and_every_later_one(payment: Frozen) -> None:
    with PlanAtProxies(plan('[{"kind": "outage", "at": "payment.charge#2"}]'), {"payment": payment}, {"payment": PAYMENT_ROUTES}) as played:
        assert charge(payment).status_code == 201
        for _ in range(2):
            with pytest.raises(httpx.RemoteProtocolError):
                charge(payment, key="o-1:again")
        assert httpx.get(f"{payment.proxy.url}/health").status_code == 200  # not a saga operation
    assert [a.attempt for a in played.applied] == [2, 3]
    assert charges(payment) == 1


def test_a_timeout_leaves_the_caller_waiting_and_nothing_applied(payment: Frozen) -> None:
    stalled = PlanAtProxies(plan('[{"kind": "timeout", "at": "payment.charge#1"}]'), {"payment": payment}, {"payment": PAYMENT_ROUTES})
    with stalled, pytest.raises(httpx.ReadTimeout):
        charge(payment, timeout=0.3)
    assert charges(payment) == 0


def test_a_pause_freezes_the_process_and_what_reached_it_lands_at_the_thaw(payment: Frozen) -> None:
    # Frozen for 1.5 real seconds (3 virtual at 0.5 s each): the charge and a second call, on
    # which the plan would otherwise lose the reply, both wait in the stopped process.
    frozen = plan('[{"kind": "pause", "seconds": 3, "at": "payment.charge#1"}, {"kind": "lose-reply", "at": "payment.charge#2"}]')
    with PlanAtProxies(frozen, {"payment": payment}, {"payment": PAYMENT_ROUTES}, scale=0.5) as played:
        for _ in range(2):
            with pytest.raises(httpx.ReadTimeout):
                charge(payment, timeout=0.3)
        assert played.settle(10.0)
        assert charges(payment) == 1
        replay = charge(payment)
        assert (replay.status_code, replay.headers.get("Idempotency-Replayed")) == (201, "true")
    assert [(a.fault.kind, a.action) for a in played.applied] == [("pause", "pause then pass")]
    assert [str(f) for f in played.missed()] == ["lose-reply at payment.charge#2"]
    assert played.errors == []
    records = payment.proxy.records
    assert [r.status for r in records] == [201, 201, 201]  # both frozen calls reached the service


def test_closing_thaws_what_the_plan_froze(payment: Frozen) -> None:
    with PlanAtProxies(plan('[{"kind": "pause", "seconds": 600, "at": "payment.charge#1"}]'), {"payment": payment}, {"payment": PAYMENT_ROUTES}) as played:
        with pytest.raises(httpx.ReadTimeout):
            charge(payment, timeout=0.3)
        assert not played.settle(0.2)
    assert httpx.get(f"{payment.process.url}/health").status_code == 200  # running again
    assert payment.proxy.settle(5.0)
    assert charges(payment) == 1


def test_a_delay_is_scaled_to_real_seconds(payment: Frozen) -> None:
    with PlanAtProxies(plan('[{"kind": "delay", "seconds": 2, "at": "payment.charge#1"}]'), {"payment": payment}, {"payment": PAYMENT_ROUTES}, scale=0.25) as played:
        with pytest.raises(httpx.ReadTimeout):
            charge(payment, timeout=0.1)
        assert charges(payment) == 0
        assert played.settle(5.0)
        assert charges(payment) == 1
    assert [a.action for a in played.applied] == ["delay seconds=0.5"]


@pytest.mark.parametrize(
    ("faults", "services", "message"),
    [
        ('[{"kind": "fail", "at": "bank.charge#1"}]', "payment", "no proxied service is called 'bank' (the services: payment)"),
        ('[{"kind": "fail", "at": "payment.capture#1"}]', "payment", "the routes of 'payment' name no operation 'capture'"),
        ('[{"kind": "crash", "at": "payment.charge#1"}]', "bare", "'payment' cannot restart (it has no restart())"),
        ('[{"kind": "pause", "at": "payment.charge#1"}]', "bare", "'payment' cannot pause or unpause"),
        ('[{"kind": "refuse", "at": "payment.charge#1"}]', "payment", "give refuse={'payment': <function that makes it refuse>}"),
    ],
)
def test_a_plan_the_services_cannot_play_is_refused_naming_why(payment: Frozen, faults: str, services: str, message: str) -> None:
    target = {"payment": payment} if services == "payment" else {"payment": Bare(payment.proxy)}
    with pytest.raises(PlanError, match=message.replace("(", r"\(").replace(")", r"\)").replace("{", r"\{").replace("}", r"\}")):
        PlanAtProxies(plan(faults), target, {"payment": PAYMENT_ROUTES})


@dataclass
class Bare:
    proxy: FaultProxy


@pytest.mark.parametrize("scale", [0, -1, float("nan"), float("inf"), True, "1"])
def test_a_bad_scale_is_an_option_error(payment: Frozen, scale: object) -> None:
    with pytest.raises(OptionError, match="scale must be a positive number"):
        PlanAtProxies(FaultPlan(), {"payment": payment}, {"payment": PAYMENT_ROUTES}, scale=scale)  # type: ignore[arg-type]


def test_routes_from_a_document_that_is_not_openapi_say_so(tmp_path: Path) -> None:
    (tmp_path / "none.json").write_text('{"paths": {"/x": {"get": {}}}}')
    with pytest.raises(OptionError, match="names no operation"):
        routes_from_openapi(tmp_path / "none.json")
    with pytest.raises(OptionError, match="cannot read the OpenAPI document"):
        routes_from_openapi(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(OptionError, match="not an OpenAPI document"):
        routes_from_openapi(tmp_path / "list.yaml")
