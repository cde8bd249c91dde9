"""The asgi runtime: the same reference saga, fault plans and invariants with every participant
an HTTP app in this process. It must reach the verdicts and minimal plans the simulation does."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest

from saga_verify import FaultPlan, explore, load_saga, replay
from saga_verify._cli import main
from saga_verify._runtimes import RUNTIMES, reference_variants
from saga_verify._world._asgi import SyncASGITransport
from saga_verify._world._http import DELIVERY_HEADER, EXECUTION_ERROR_HEADER, EXECUTION_HEADER, ROWS_HEADER
from saga_verify.errors import OptionError
from saga_verify.reference.services import create_app

NO_DB = hypothesis.settings(database=None)


def _variant(name: str, runtime: str):  # type: ignore[no-untyped-def]
    return next(v for v in reference_variants(runtime) if v.name == name)


@pytest.mark.parametrize("name", ["charge_without_key", "non_idempotent_refund", "refund_forgets_charge"])
def test_http_finds_the_same_minimal_plan_as_simulation(name: str, tmp_path: Path) -> None:
    found = {}
    for runtime in ("sim", "asgi"):
        result = explore(_variant(name, runtime).saga, settings=NO_DB, report_dir=tmp_path / runtime, max_examples=0)
        (failure, *_) = result.failures
        found[runtime] = (failure.plan.faults, failure.invariants, failure.examples)
    assert found["asgi"] == found["sim"]


def test_correct_saga_holds_over_http_under_every_single_fault(tmp_path: Path) -> None:
    result = explore(_variant("order", "asgi").saga, settings=NO_DB, report_dir=tmp_path, sweep_faults=1, max_examples=0)
    assert result.ok
    assert result.sweep_executions > 30


def test_http_trace_records_requests_keys_and_status(tmp_path: Path) -> None:
    saga = _variant("order", "asgi").saga
    plan = FaultPlan.loads('{"faults": [{"kind": "lose-reply", "at": "payment.charge#1"}]}')
    execution, violations = replay(saga, plan)
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
    saga = _variant("order", "asgi").saga
    first, _ = replay(saga, FaultPlan())
    second, _ = replay(saga, FaultPlan())
    assert [r.ref for r in first.rows()] == [r.ref for r in second.rows()] == ["res-1", "ch-1", "sh-1", "msg-1"]


def test_refuse_reaches_the_service_as_its_own_refusal() -> None:
    saga = _variant("order", "asgi").saga
    plan = FaultPlan.loads('{"faults": [{"kind": "refuse", "at": "payment.charge#1"}]}')
    execution, violations = replay(saga, plan)
    assert violations == []
    assert execution.status == "compensated"
    assert execution.trace[1].reply == {"status": 402, "json": {"status": "refused", "reason": "card_declined"}}


def test_http_plan_files_replay_by_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = explore(_variant("charge_without_key", "asgi").saga, settings=NO_DB, report_dir=tmp_path, max_examples=0)
    (failure,) = result.failures
    assert failure.plan_path is not None
    stored = json.loads(failure.plan_path.read_text())
    assert stored["saga"] == "saga_verify._runtimes.asgi_reference:charge_without_key"
    assert load_saga(stored["saga"]).name == "charge_without_key"
    assert main(["replay", str(failure.plan_path)]) == 1
    out = capsys.readouterr().out
    assert "path=/charges" in out
    assert "REPLY LOST" in out


def test_unknown_http_saga_name_is_a_clear_error() -> None:
    with pytest.raises(Exception, match="no 'nope'"):
        load_saga("saga_verify._runtimes.asgi_reference:nope")


def test_unknown_runtime_is_refused() -> None:
    assert RUNTIMES == ("sim", "asgi", "process", "container")
    with pytest.raises(OptionError, match="runtime 'kubernetes' is not available; choose from: sim, asgi, process, container"):
        reference_variants("kubernetes")


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


def _charge(client: httpx.Client, key: str, execution: int | None, delivery: int = 0) -> httpx.Response:
    headers = {"Idempotency-Key": key, DELIVERY_HEADER: str(delivery)}
    if execution is not None:
        headers[EXECUTION_HEADER] = str(execution)
    return client.post("/charges", json={"order_id": "o-1", "amount": 5}, headers=headers)


def test_a_request_that_names_an_execution_is_served_within_it() -> None:
    """The protocol the process runtime uses: a request of a new execution gets a new participant
    first; every answer carries the rows its request recorded."""
    app = create_app("payment", inspect=True)
    with httpx.Client(transport=SyncASGITransport(app), base_url="http://payment") as client:
        first = _charge(client, "k", execution=1)
        assert first.status_code == 201
        (row,) = json.loads(first.headers[ROWS_HEADER])
        assert (row["action"], row["ref"], row["delivery"], row["seq"], row["participant"]) == ("charge", "ch-1", 0, 0, "payment")
        again = _charge(client, "k", execution=1, delivery=1)
        assert (again.headers["Idempotency-Replayed"], json.loads(again.headers[ROWS_HEADER])) == ("true", [])
        other = _charge(client, "k2", execution=1, delivery=2)
        assert [r["ref"] for r in json.loads(other.headers[ROWS_HEADER])] == ["ch-2"]
        fresh = _charge(client, "k", execution=2)
        assert "Idempotency-Replayed" not in fresh.headers  # a new participant, with a new dedupe store
        assert [r["ref"] for r in json.loads(fresh.headers[ROWS_HEADER])] == ["ch-1"]
        unnamed = _charge(client, "k3", execution=None)
        assert ROWS_HEADER not in unnamed.headers
        assert [r["ref"] for r in client.get("/_inspect/ledger").json()] == ["ch-1", "ch-2"]  # execution 2's participant


def test_without_inspection_a_request_cannot_name_an_execution() -> None:
    app = create_app("payment")
    with httpx.Client(transport=SyncASGITransport(app), base_url="http://payment") as client:
        assert _charge(client, "k", execution=1).status_code == 201
        again = _charge(client, "k", execution=2)
    assert again.headers["Idempotency-Replayed"] == "true"  # the same participant
    assert ROWS_HEADER not in again.headers


def test_a_service_that_cannot_start_an_execution_says_why() -> None:
    class BuiltOnce:
        def __init__(self) -> None:
            if hasattr(type(self), "built"):
                raise TypeError("built once already")
            type(self).built = True

        def charge(self, **fields: Any) -> dict[str, Any]:
            return {"status": "ok", "charge_id": "ch-1"}

        refund = charge

    app = create_app("payment", participant=BuiltOnce(), inspect=True)
    with httpx.Client(transport=SyncASGITransport(app), base_url="http://payment") as client:
        reply = _charge(client, "k", execution=1)
    assert reply.status_code == 501
    assert reply.headers[EXECUTION_ERROR_HEADER] == "cannot start execution 1: a BuiltOnce cannot be built without arguments: built once already"
    assert ROWS_HEADER not in reply.headers


@pytest.mark.slow
def test_demo_over_http_matches_simulation(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rows = {}
    for runtime in ("sim", "asgi"):
        assert main(["demo", "--json", "--runtime", runtime, "--report-dir", str(tmp_path / runtime)]) == 0
        rows[runtime] = json.loads(capsys.readouterr().out)
    assert all(r["runtime"] == "asgi" for r in rows["asgi"])
    shape = [(r["saga"], r["verdict"], r["violated"], r["plan"] and r["plan"]["faults"]) for r in rows["sim"]]
    assert shape == [(r["saga"], r["verdict"], r["violated"], r["plan"] and r["plan"]["faults"]) for r in rows["asgi"]]
