"""The asgi runtime: the same reference saga, fault plans and invariants with every participant
an HTTP app in this process, reached through the declared System. It must reach the verdicts and
minimal plans the simulation does."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest
from demo_rows import assert_demo_matches_simulation
from durable_plans import assert_durable_plans_replay_as_in_simulation

from saga_verify import FaultPlan, Saga, Step, explore, replay, run_plan
from saga_verify._cli import main
from saga_verify._runtimes import RUNTIMES
from saga_verify._world._asgi import SyncASGITransport
from saga_verify.errors import OptionError
from saga_verify.reference import charge_without_key, order_saga, variants
from saga_verify.reference.services import create_app
from saga_verify.systems import Service, ServiceSetupError, System

NO_DB = hypothesis.settings(database=None)
CORPUS = Path(__file__).resolve().parents[2] / "fixtures" / "corpus"


def _corpus() -> list[Path]:
    """The corpus plans of the variants that run on asgi (the timed sagas run on sim only)."""
    here = {v.name for v in variants() if "asgi" in v.runtimes}
    return [p for p in sorted(CORPUS.glob("*.json")) if p.stem in here]


def _variant(name: str) -> Saga:
    return next(v.saga for v in variants() if v.name == name)


@pytest.mark.parametrize("name", ["charge_without_key", "non_idempotent_refund", "refund_forgets_charge"])
def test_http_finds_the_same_minimal_plan_as_simulation(name: str, tmp_path: Path) -> None:
    found = {}
    for runtime in ("sim", "asgi"):
        result = explore(
            _variant(name), settings=NO_DB, report_dir=tmp_path / runtime, max_examples=0, runtime=runtime, all_failures=False
        )
        (failure, *_) = result.failures
        found[runtime] = (failure.plan.faults, failure.invariants, failure.examples)
    assert found["asgi"] == found["sim"]


@pytest.mark.parametrize("path", _corpus(), ids=lambda p: p.stem)
def test_a_plan_takes_the_same_effects_over_http_as_in_simulation(path: Path) -> None:
    plan = FaultPlan.load(path)
    saga = _variant(path.stem)
    effects = {}
    for runtime in ("sim", "asgi"):
        execution = run_plan(saga, plan, runtime=runtime)
        # The same effects, by the same deliveries, in the same order, as the saga ended the same.
        effects[runtime] = (execution.status, [(r.participant, r.action, r.amount, r.correlation_id, r.delivery) for r in execution.rows()])
    assert effects["asgi"] == effects["sim"]


def test_correct_saga_holds_over_http_under_every_single_fault(tmp_path: Path) -> None:
    result = explore(order_saga, settings=NO_DB, report_dir=tmp_path, sweep_faults=1, max_examples=0, runtime="asgi")
    assert result.ok
    assert result.sweep_executions > 30


def test_http_trace_records_requests_keys_and_status() -> None:
    plan = FaultPlan.loads('{"faults": [{"kind": "lose-reply", "at": "payment.charge#1"}]}')
    execution, violations = replay(order_saga, plan, runtime="asgi")
    assert violations == []
    assert execution.status == "completed"
    lost, retry = execution.trace[1], execution.trace[2]
    assert (lost.point, lost.outcome, retry.point) == ("payment.charge#1", "reply-lost", "payment.charge#2")
    assert lost.key == retry.key == "order-1:charge"  # from the Idempotency-Key header
    assert lost.request == {"method": "POST", "path": "/charges", "json": {"order_id": "order-1", "amount": 100}}
    assert lost.reply["status"] == retry.reply["status"] == 201
    # The service dedupes by key: one charge, stamped with the delivery that made it.
    (charge,) = execution.rows("payment", "charge")
    assert charge.delivery == lost.seq


def test_each_execution_starts_from_fresh_services() -> None:
    first, _ = replay(order_saga, FaultPlan(), runtime="asgi")
    second, _ = replay(order_saga, FaultPlan(), runtime="asgi")
    assert [r.ref for r in first.rows()] == [r.ref for r in second.rows()] == ["res-1", "ch-1", "sh-1", "msg-1"]


def test_refuse_reaches_the_service_as_its_own_refusal() -> None:
    plan = FaultPlan.loads('{"faults": [{"kind": "refuse", "at": "payment.charge#1"}]}')
    execution, violations = replay(order_saga, plan, runtime="asgi")
    assert violations == []
    assert execution.status == "compensated"
    assert execution.trace[1].reply == {"status": 402, "json": {"status": "refused", "reason": "card_declined"}}


def test_plan_files_replay_on_the_runtime_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = explore(charge_without_key, settings=NO_DB, report_dir=tmp_path, max_examples=0, runtime="asgi", all_failures=False)
    failure = result.failures[0]
    assert failure.plan_path is not None
    stored = json.loads(failure.plan_path.read_text())
    assert stored["saga"] == {"name": "charge_without_key", "ref": "saga_verify.reference:charge_without_key"}
    assert main(["replay", str(failure.plan_path), "--runtime", "asgi"]) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "saga 'charge_without_key' under lose-reply at payment.charge#1 on asgi"
    assert "path=/charges" in out
    assert "REPLY LOST" in out


def test_unknown_runtime_is_refused() -> None:
    assert RUNTIMES == ("sim", "asgi", "process", "container")
    with pytest.raises(OptionError, match="runtime 'kubernetes' does not exist; choose from: sim, asgi, process, container"):
        explore(order_saga, runtime="kubernetes", report_dir=None)


def _plain_saga() -> Saga:
    class Stock:
        def reserve(self, idempotency_key: str | None = None) -> str:
            return "ok"

    return Saga("plain", steps=[Step("stock", "reserve")], participants=lambda: {"stock": Stock()}, run=lambda s, _: s.stock.reserve() and "completed")


def test_a_saga_that_builds_its_own_participants_runs_on_sim_only() -> None:
    with pytest.raises(OptionError, match=r"saga 'plain' builds its participants itself, so it runs on sim only; to run it on 'asgi', declare its services with saga_verify.System"):
        run_plan(_plain_saga(), runtime="asgi")
    assert run_plan(_plain_saga()).status == "completed"


def test_a_service_declared_without_an_app_cannot_run_in_this_process() -> None:
    saga = Saga(
        "modelled",
        steps=[Step("stock", "reserve")],
        participants=System(Service("stock", model=dict)),
        run=lambda s, _: "completed",
    )
    with pytest.raises(OptionError, match=r"service 'stock' cannot run on 'asgi'; it is declared for sim \(give it an app factory\)"):
        run_plan(saga, runtime="asgi")


def test_an_app_factory_that_raises_is_named() -> None:
    def broken_app() -> Any:
        raise RuntimeError("no database")

    saga = Saga(
        "unbuildable",
        steps=[Step("stock", "reserve")],
        participants=System(Service("stock", app=broken_app, routes={"reserve": "POST /reservations"})),
        run=lambda s, _: "completed",
    )
    with pytest.raises(ServiceSetupError, match=r"service 'stock': its app factory raised RuntimeError: no database"):
        run_plan(saga, runtime="asgi")


def test_sync_transport_serves_an_app_to_a_plain_client() -> None:
    transport = SyncASGITransport(create_app("payment"))
    with httpx.Client(transport=transport, base_url="http://payment") as client:
        first = client.post("/charges", json={"order_id": "o", "amount": 5}, headers={"Idempotency-Key": "k"})
        again = client.post("/charges", json={"order_id": "o", "amount": 5}, headers={"Idempotency-Key": "k"})
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotency-Replayed"] == "true"
    assert first.json() == again.json()


def _echo_scope(seen: list[dict[str, Any]]) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        seen.append({**scope, "body": body})
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-echo", b"1")]})
        await send({"type": "http.response.body", "body": b"pa", "more_body": True})
        await send({"type": "http.response.body", "body": b"rts"})

    return app


def test_sync_transport_speaks_asgi_as_httpx_does() -> None:
    seen: list[dict[str, Any]] = []
    url = "http://payment:8000/charges/a%2Fb?x=1&y=%20"
    request: dict[str, Any] = {"method": "POST", "url": url, "json": {"a": 1}, "headers": {"Idempotency-Key": "k"}}
    with httpx.Client(transport=SyncASGITransport(_echo_scope(seen))) as client:
        ours = client.request(**request)

    async def theirs() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_echo_scope(seen))) as client:
            return await client.request(**request)

    reference = asyncio.run(theirs())
    assert seen[0] == seen[1]
    assert (ours.status_code, ours.content, ours.headers["x-echo"]) == (reference.status_code, reference.content, "1") == (200, b"parts", "1")


def test_sync_transport_lets_the_apps_errors_reach_the_caller() -> None:
    async def failing(scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise LookupError("no such thing")

    with httpx.Client(transport=SyncASGITransport(failing), base_url="http://app") as client, pytest.raises(LookupError):
        client.get("/")


@pytest.mark.slow
def test_demo_over_http_matches_simulation(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert_demo_matches_simulation("asgi", capsys, tmp_path)


def test_plans_that_crash_the_durable_coordinator_replay_as_in_simulation() -> None:
    assert_durable_plans_replay_as_in_simulation("asgi")
