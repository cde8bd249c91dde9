"""The service's half of the remote-effects protocol: what `EffectsMiddleware` does with the
harness's headers, and what it answers."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from saga_verify import Ledger
from saga_verify._world._asgi import SyncASGITransport
from saga_verify.systems import EffectsMiddleware, record_effect

HARNESS = {"Saga-Verify-Delivery": "7", "Saga-Verify-Correlation": "order%201", "Saga-Verify-Time": "1.25", "Saga-Verify-Execution": "3"}


def _payment() -> FastAPI:
    """A tiny payment service: a charge records an effect, state lives in the app."""
    app = FastAPI()
    app.state.charges = []

    @app.post("/charges")
    def charge(body: dict[str, Any]) -> dict[str, Any]:
        app.state.charges.append(body["amount"])
        record_effect("charge", body["amount"], ref=f"ch-{len(app.state.charges)}")
        return {"status": "ok", "charges": len(app.state.charges)}

    return app


def _client(app: Any) -> httpx.Client:
    return httpx.Client(transport=SyncASGITransport(app), base_url="http://payment")


def _rows(response: httpx.Response) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(response.headers["Saga-Verify-Rows"])
    return rows


def test_a_deliverys_effects_come_back_stamped_with_what_the_harness_said() -> None:
    with _client(EffectsMiddleware(factory=_payment)) as client:
        answer = client.post("/charges", json={"amount": 100}, headers={**HARNESS, "Saga-Verify-Fresh": "1"})
    assert answer.status_code == 200
    assert answer.headers["Saga-Verify-Effects"] == "1"
    assert _rows(answer) == [
        {"action": "charge", "amount": 100, "ref": "ch-1", "correlation_id": "order 1", "delivery": 7, "time": 1.25, "index": 0}
    ]


def test_a_fresh_execution_gets_a_new_app_and_the_rest_of_it_the_same_one() -> None:
    with _client(EffectsMiddleware(factory=_payment)) as client:
        first = client.post("/charges", json={"amount": 1}, headers={**HARNESS, "Saga-Verify-Fresh": "1"})
        second = client.post("/charges", json={"amount": 2}, headers={**HARNESS, "Saga-Verify-Delivery": "8"})
        again = client.post("/charges", json={"amount": 3}, headers={**HARNESS, "Saga-Verify-Execution": "4", "Saga-Verify-Fresh": "1"})
    assert [a.json()["charges"] for a in (first, second, again)] == [1, 2, 1]


def test_requests_without_the_harness_headers_pass_through_unstamped() -> None:
    with _client(EffectsMiddleware(factory=_payment)) as client:
        answer = client.post("/charges", json={"amount": 5})
    assert answer.json() == {"status": "ok", "charges": 1}
    assert "Saga-Verify-Rows" not in answer.headers
    assert answer.headers["Saga-Verify-Effects"] == "1"  # it passed the middleware all the same


def test_a_ledger_records_into_the_request_being_served() -> None:
    ledger = Ledger()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        ledger.record("release", 2, "res-9")
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    with _client(EffectsMiddleware(app, reset=ledger.rows.clear)) as client:
        answer = client.post("/releases", headers=HARNESS)
    (row,) = _rows(answer)
    assert (row["action"], row["amount"], row["ref"], row["delivery"], row["correlation_id"]) == ("release", 2, "res-9", 7, "order 1")
    assert ledger.rows[0].delivery == 7  # the service's own ledger keeps its row too


def test_reset_starts_an_execution_afresh_and_its_failure_is_answered_not_served() -> None:
    calls = []

    def reset() -> None:
        calls.append(1)
        if len(calls) == 2:
            raise OSError("the database is gone")

    with _client(EffectsMiddleware(_payment(), reset=reset)) as client:
        assert client.post("/charges", json={"amount": 1}, headers={**HARNESS, "Saga-Verify-Fresh": "1"}).status_code == 200
        failed = client.post("/charges", json={"amount": 1}, headers={**HARNESS, "Saga-Verify-Execution": "4", "Saga-Verify-Fresh": "1"})
    assert failed.status_code == 503
    assert failed.headers["Saga-Verify-Execution-Error"] == "cannot start execution 4: the reset raised OSError: the database is gone"
    assert "Saga-Verify-Rows" not in failed.headers


def test_it_answers_its_ready_check_and_an_executions_effects() -> None:
    with _client(EffectsMiddleware(factory=_payment)) as client:
        assert client.get("/_saga-verify/ready").json() == {"status": "ok"}
        client.post("/charges", json={"amount": 4}, headers={**HARNESS, "Saga-Verify-Fresh": "1"})
        client.post("/charges", json={"amount": 6}, headers={**HARNESS, "Saga-Verify-Delivery": "9"})
        effects = client.get("/_saga-verify/effects", params={"execution": "3"})
        elsewhere = client.get("/_saga-verify/effects", params={"execution": "2"})
    assert [(r["amount"], r["delivery"]) for r in effects.json()] == [(4, 7), (6, 9)]
    assert elsewhere.status_code == 404
    assert elsewhere.json() == {"detail": "not serving execution '2' (serving '3')"}


def test_effects_too_many_for_a_header_are_left_to_the_effects_path() -> None:
    def busy() -> FastAPI:
        app = FastAPI()

        @app.post("/batch")
        def batch() -> dict[str, str]:
            for i in range(200):
                record_effect("charge", 1, ref=f"a-very-long-reference-for-charge-number-{i}")
            return {"status": "ok"}

        return app

    with _client(EffectsMiddleware(factory=busy)) as client:
        answer = client.post("/batch", headers={**HARNESS, "Saga-Verify-Fresh": "1"})
        kept = client.get("/_saga-verify/effects", params={"execution": "3"}).json()
    assert "Saga-Verify-Rows" not in answer.headers
    assert len(kept) == 200


def test_recording_outside_a_delivery_does_nothing() -> None:
    assert record_effect("charge", 5) is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "takes an app \\(with reset=\\) or a factory=, one of the two"),
        ({"app": _payment(), "factory": _payment}, "one of the two"),
        ({"app": _payment()}, "needs reset=: how the service starts an execution afresh"),
        ({"factory": 3}, "factory must build the app"),
    ],
)
def test_it_says_how_it_is_mounted_wrongly(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(TypeError, match=message):
        EffectsMiddleware(**kwargs)
