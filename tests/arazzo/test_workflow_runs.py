"""Running a workflow: requests built from its expressions go through the harness (so faults apply),
retries wait on the virtual clock, refusals, gotos and ends are followed, and what the run did
decides the saga's outcome. Against the reference services in this process, and a small service
of its own for what the reference workflow does not use (path and query parameters, Retry-After,
success gotos, regex criteria, outputs from headers and from the request)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from arazzo_documents import FREE_ORDER, ORDER

import saga_verify
from saga_verify import FaultPlan, Saga, replay, run_plan
from saga_verify.arazzo import load
from saga_verify.errors import SagaDefinitionError
from saga_verify.reference import STEPS, order_saga, reference_http_system, reference_system
from saga_verify.systems import Service, System, record_effect


@pytest.fixture(scope="module")
def workflow() -> Saga:
    return load(ORDER)


def _plan(text: str) -> FaultPlan:
    faults = [{"kind": k, "at": at} for k, _, at in (f.partition(" at ") for f in text.split("; "))]
    return FaultPlan.from_json({"faults": faults})


def _calls(execution: Any) -> list[tuple[str, str]]:
    return [(e.point, e.outcome) for e in execution.trace]


def test_the_workflow_makes_the_coded_sagas_calls(workflow: Saga) -> None:
    ours, theirs = run_plan(workflow, runtime="asgi"), run_plan(order_saga, runtime="asgi")
    assert ours.status == theirs.status == "completed"
    # The same requests, keys and replies at the same virtual times: one trace.
    assert [(e.time, e.point, e.key, e.request, e.reply) for e in ours.trace] == [(e.time, e.point, e.key, e.request, e.reply) for e in theirs.trace]
    assert [e.key for e in ours.trace] == ["order-1:reserve", "order-1:charge", "order-1:ship", "order-1:notify"]


def test_retries_wait_on_the_virtual_clock(workflow: Saga) -> None:
    execution = run_plan(workflow, _plan("fail at payment.charge#1; timeout at payment.charge#2"), runtime="asgi")
    charges = [e for e in execution.trace if e.operation == "charge"]
    assert [e.outcome for e in charges] == ["failed", "timed-out", "ok"]
    assert execution.status == "completed"
    # retryAfter 0.2, then 0.4 after the timeout: the same waits as the coded saga's back-off.
    coded = [e for e in run_plan(order_saga, _plan("fail at payment.charge#1; timeout at payment.charge#2"), runtime="asgi").trace if e.operation == "charge"]
    assert [e.time for e in charges] == [e.time for e in coded]
    assert charges[1].time - charges[0].time > 0.2
    assert charges[2].time - charges[1].time > 0.4 + 1.0  # the timeout took the call timeout


def test_a_refusal_goes_back_without_undoing_the_refused_step(workflow: Saga) -> None:
    execution = run_plan(workflow, _plan("refuse at payment.charge#1"), runtime="asgi")
    assert [p for p, _ in _calls(execution)] == ["inventory.reserve#1", "payment.charge#1", "inventory.release#1"]
    assert execution.trace[1].reply == {"status": 402, "json": {"status": "refused", "reason": "card_declined"}}
    assert execution.status == "compensated"


def test_an_unknown_outcome_is_undone_in_reverse(workflow: Saga) -> None:
    execution = run_plan(workflow, _plan("outage at shipping.create#1"), runtime="asgi")
    assert [p for p, _ in _calls(execution)] == [
        "inventory.reserve#1", "payment.charge#1", "shipping.create#1", "shipping.create#2", "shipping.create#3",
        "shipping.cancel#1", "payment.refund#1", "inventory.release#1",
    ]
    assert execution.status == "compensated"
    assert [r.action for r in execution.rows()] == ["reserve", "charge", "refund", "release"]


def test_an_irreversible_step_that_cannot_be_made_leaves_the_order_standing(workflow: Saga) -> None:
    execution = run_plan(workflow, _plan("outage at notification.send#1"), runtime="asgi")
    assert [p for p, _ in _calls(execution)][-3:] == ["notification.send#1", "notification.send#2", "notification.send#3"]
    assert execution.status == "completed"


def test_a_compensation_that_cannot_be_made_fails_the_saga(workflow: Saga) -> None:
    execution, violations = replay(workflow, _plan("refuse at shipping.create#1; outage at payment.refund#1"), runtime="asgi")
    assert execution.status == "failed"
    assert violations == []  # failed, and honest about it: the refund it could not make is what stands
    assert [p for p, _ in _calls(execution)][-4:] == ["payment.refund#1", "payment.refund#2", "payment.refund#3", "inventory.release#1"]


def test_on_sim_a_service_with_a_model_cannot_take_http() -> None:
    saga = load(ORDER, participants=reference_system())
    with pytest.raises(SagaDefinitionError, match=r"calls inventory over HTTP, but on sim that service runs as its Python model: declare it without model="):
        saga_verify.explore(saga, report_dir=None, max_examples=0)
    assert run_plan(saga, runtime="asgi").status == "completed"  # over HTTP the same System serves it


def test_a_handoff_that_finds_nothing_stops_the_run() -> None:
    # Loaded past its static checks, the free order reads a charge that was never made.
    saga = load(FREE_ORDER, strict=False, input={"order_id": "o-2", "sku": "sku-1", "qty": 1, "amount": 0}, participants=reference_http_system())
    execution = run_plan(saga, runtime="asgi")
    assert type(execution.error).__name__ == "HandoffError"
    assert "step 'sendNotification'" in str(execution.error)
    assert "/message" in str(execution.error)


def test_hooks_must_match_the_workflows_steps() -> None:
    from saga_verify import Step
    from saga_verify.arazzo import ArazzoError

    with pytest.raises(ArazzoError, match=r"step 'chargePayment': the hooks give payment\.charge the compensation 'void'; the workflow undoes it with 'refund'"):
        load(ORDER, hooks=[Step("payment", "charge", "void")])
    with pytest.raises(ArazzoError, match=r"the hooks name payment\.authorize, which no forward step of workflow 'placeOrder' calls"):
        load(ORDER, hooks=[Step("payment", "authorize")])
    assert [(s.participant, s.action, s.compensation, s.refuse, s.restart) for s in load(ORDER, hooks=STEPS).steps] == [
        (s.participant, s.action, s.compensation, s.refuse, s.restart) for s in STEPS
    ]


# -- a small service of its own ------------------------------------------------------------------
TICKETS_OPENAPI = {
    "openapi": "3.1.0",
    "info": {"title": "tickets", "version": "1"},
    "paths": {
        "/queues/{queue}/tickets": {
            "post": {
                "operationId": "open",
                "parameters": [
                    {"name": "queue", "in": "path", "required": True, "schema": {"type": "string"}},
                    {"name": "priority", "in": "query", "schema": {"type": "string", "enum": ["low", "high"]}},
                    {"name": "Idempotency-Key", "in": "header", "schema": {"type": "string"}},
                ],
                "responses": {"201": {"description": "opened", "content": {"application/json": {"schema": {"type": "object", "properties": {"id": {"type": "string"}}}}}}},
            }
        },
        "/queues/{queue}": {"get": {"operationId": "peek", "parameters": [{"name": "queue", "in": "path", "required": True, "schema": {"type": "string"}}], "responses": {"200": {"description": "the queue"}}}},
        "/queues/{queue}/tickets/{id}/close": {
            "post": {
                "operationId": "close",
                "parameters": [
                    {"name": "queue", "in": "path", "required": True, "schema": {"type": "string"}},
                    {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}},
                ],
                "responses": {"200": {"description": "closed"}},
            }
        },
    },
}

TICKETS_WORKFLOW = """
arazzo: 1.0.0
info: {title: tickets, version: 1.0.0}
sourceDescriptions:
  - {name: tickets, url: tickets.openapi.json, type: openapi}
workflows:
  - workflowId: openAndClose
    inputs: {type: object, properties: {queue: {type: string}}, examples: [{queue: support}]}
    steps:
      - stepId: open
        operationId: open
        parameters:
          - {name: queue, in: path, value: $inputs.queue}
          - {name: priority, in: query, value: high}
          - {name: Idempotency-Key, in: header, value: 'open-{$inputs.queue}'}
        successCriteria:
          - {context: $statusCode, condition: '^201$', type: regex}
        outputs:
          id: $response.body#/id
          location: $response.header.Location
          key: $request.header.Idempotency-Key
        onSuccess:
          - name: urgent
            type: goto
            stepId: close
            criteria:
              - condition: $response.body#/priority == 'HIGH'
        onFailure:
          - {name: later, type: retry, retryAfter: 0.5, retryLimit: 2}
      - stepId: peek
        operationId: peek
        parameters:
          - {name: queue, in: path, value: $inputs.queue}
      - stepId: close
        operationId: close
        parameters:
          - {name: queue, in: path, value: $inputs.queue}
          - {name: id, in: path, value: $steps.open.outputs.id}
"""


def _tickets_app() -> Any:
    """Answers 503 with Retry-After: 2 to the first request of an execution, then serves."""
    calls = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        calls.append(scope["path"])
        parts = scope["path"].strip("/").split("/")
        query = dict(p.split("=", 1) for p in scope["query_string"].decode().split("&") if p)
        if len(calls) == 1:
            status, headers, body = 503, [(b"retry-after", b"2")], {"error": "busy"}
        elif parts[-1] == "close":
            record_effect("close", 1, parts[3])
            status, headers, body = 200, [], {"closed": parts[3]}
        else:
            ticket = f"{parts[1]}-1"
            record_effect("open", 1, ticket)
            status, headers, body = 201, [(b"location", f"/queues/{parts[1]}/tickets/{ticket}".encode())], {"id": ticket, "priority": query.get("priority")}
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json"), *headers]})
        await send({"type": "http.response.body", "body": json.dumps(body).encode()})

    return app


def test_parameters_retry_after_success_gotos_and_outputs(tmp_path: Path) -> None:
    (tmp_path / "tickets.openapi.json").write_text(json.dumps(TICKETS_OPENAPI))
    (tmp_path / "tickets.arazzo.yaml").write_text(TICKETS_WORKFLOW)
    routes = {"open": "POST /queues/{queue}/tickets", "peek": "GET /queues/{queue}", "close": "POST /queues/{queue}/tickets/{id}/close"}
    saga = load(tmp_path / "tickets.arazzo.yaml", participants=System(Service("tickets", app=_tickets_app, routes=routes)), strict=False)
    execution = run_plan(saga, runtime="asgi")
    opens = [e for e in execution.trace if e.operation == "open"]
    assert [(e.point, e.reply["status"]) for e in opens] == [("tickets.open#1", 503), ("tickets.open#2", 201)]
    assert opens[1].time - opens[0].time > 2.0  # the reply's Retry-After overrules retryAfter 0.5
    assert opens[1].key == "open-support"
    assert [e.operation for e in execution.trace] == ["open", "open", "close"]  # priority=high: the goto skipped peek
    (close,) = [e for e in execution.trace if e.operation == "close"]
    assert close.request["path"] == "/queues/support/tickets/support-1/close"
    assert [(r.action, r.ref) for r in execution.rows()] == [("open", "support-1"), ("close", "support-1")]
    assert execution.status == "completed"
    outputs = execution.result["outputs"]["open"]
    assert outputs == {"id": "support-1", "location": "/queues/support/tickets/support-1", "key": "open-support"}
