"""The HTTP seam: sagas written against httpx.Client / httpx.AsyncClient, verified unchanged, with
participants behind httpx.MockTransport handlers that record to a Ledger."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from saga_verify import Execution, FaultPlan, HttpParticipant, Ledger, Saga, Step, run_plan
from saga_verify._world import trace_to_json
from saga_verify.errors import SagaDefinitionError
from saga_verify.faults import (
    Delay,
    DeliveryPoint,
    Duplicate,
    FailBeforeEffect,
    Fault,
    LoseReply,
    Outage,
    Refuse,
    Timeout,
)
from saga_verify.invariants import check, no_double_effect
from saga_verify.reference import Payment

P = DeliveryPoint.parse
ORDER = {"order_id": "order-7", "amount": 40}
ROUTES = {"charge": "POST /charges", "refund": "POST /refunds"}


class PaymentService:
    """A small HTTP payment service. POST /charges charges (deduped by the Idempotency-Key header
    when there is one), POST /refunds refunds a charge by its key."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.replies: dict[str, dict[str, Any]] = {}
        self.charged: dict[str, str] = {}
        self.decline_next = False
        self.count = 0
        self.requests: list[tuple[str, str]] = []

    def decline(self) -> None:
        self.decline_next = True

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((request.method, request.url.path))
        body = json.loads(request.content or b"{}")
        key = request.headers.get("Idempotency-Key")
        if key is not None and key in self.replies:
            return httpx.Response(200, json=self.replies[key])
        if request.url.path == "/charges":
            if self.decline_next:
                self.decline_next = False
                reply: dict[str, Any] = {"status": "refused", "reason": "card_declined"}
                code = 402
            else:
                self.count += 1
                cid = f"ch-{self.count}"
                self.ledger.record("charge", body["amount"], cid)
                if key is not None:
                    self.charged[key] = cid
                reply, code = {"status": "ok", "charge_id": cid}, 201
        elif request.url.path == "/refunds":
            cid = self.charged.pop(body["charge_key"], None)
            if cid is not None:
                self.ledger.record("refund", 40, cid)
            reply, code = {"status": "ok", "refunded": cid}, 200
        else:
            return httpx.Response(404, json={"error": "no such path"})
        if key is not None:
            self.replies[key] = reply
        return httpx.Response(code, json=reply)


def http_participants(
    asynchronous: bool = False, routes: dict[str, str] | None = None
) -> Callable[[], dict[str, object]]:
    def make() -> dict[str, object]:
        ledger = Ledger()
        service = PaymentService(ledger)
        participant = HttpParticipant(
            httpx.MockTransport(service), routes or ROUTES, ledger=ledger, state=service, asynchronous=asynchronous
        )
        return {"payment": participant}

    return make


STEPS = [Step("payment", "charge", compensation="refund", refuse=lambda p: p.state.decline())]
KEY = "order-7:charge"


def sync_run(services: Any, order: Any) -> dict[str, Any]:
    client: httpx.Client = services.payment
    errors: list[str] = []
    for attempt in range(3):
        if attempt:
            services.clock.sleep(0.2)
        try:
            response = client.post(
                "/charges",
                json={"order_id": order["order_id"], "amount": order["amount"]},
                headers={"Idempotency-Key": KEY},
            )
        except (httpx.ConnectError, httpx.ReadTimeout) as exc:
            errors.append(type(exc).__name__)
            continue
        if response.json()["status"] == "ok":
            return {"status": "completed", "errors": errors}
        return {"status": "compensated", "errors": errors}
    try:
        client.post("/refunds", json={"charge_key": KEY}, headers={"Idempotency-Key": "order-7:refund"})
    except httpx.TransportError as exc:
        errors.append(type(exc).__name__)
        return {"status": "failed", "errors": errors}
    return {"status": "compensated", "errors": errors}


async def async_run(services: Any, order: Any) -> dict[str, Any]:
    client: httpx.AsyncClient = services.payment
    errors: list[str] = []
    for attempt in range(3):
        if attempt:
            await services.clock.asleep(0.2)
        try:
            response = await client.post(
                "/charges",
                json={"order_id": order["order_id"], "amount": order["amount"]},
                headers={"Idempotency-Key": KEY},
            )
        except (httpx.ConnectError, httpx.ReadTimeout) as exc:
            errors.append(type(exc).__name__)
            continue
        if response.json()["status"] == "ok":
            return {"status": "completed", "errors": errors}
        return {"status": "compensated", "errors": errors}
    try:
        await client.post("/refunds", json={"charge_key": KEY}, headers={"Idempotency-Key": "order-7:refund"})
    except httpx.TransportError as exc:
        errors.append(type(exc).__name__)
        return {"status": "failed", "errors": errors}
    return {"status": "compensated", "errors": errors}


sync_saga = Saga("http-sync", steps=STEPS, participants=http_participants(), run=sync_run, input=ORDER)
async_saga = Saga(
    "http-async", steps=STEPS, participants=http_participants(asynchronous=True), run=async_run, input=ORDER
)
BOTH = pytest.mark.parametrize("saga", [sync_saga, async_saga], ids=["sync", "async"])


def run(saga: Saga, *faults: Fault) -> Execution:
    return run_plan(saga, FaultPlan(tuple(faults)))


def charges(execution: Execution) -> list[tuple[int, str, str | None]]:
    return [(e.attempt, e.outcome, e.fault) for e in execution.trace if e.operation == "charge"]


@BOTH
def test_without_faults_the_request_goes_through_the_world(saga: Saga) -> None:
    execution = run(saga)
    assert execution.status == "completed"
    assert execution.error is None
    (entry,) = execution.trace
    assert entry.point == "payment.charge#1"
    assert entry.outcome == "ok"
    assert entry.request == {"method": "POST", "path": "/charges", "json": {"order_id": "order-7", "amount": 40}}
    assert entry.key == KEY  # from the Idempotency-Key header
    assert entry.correlation_id == "order-7"
    assert entry.reply == {"status": 201, "json": {"status": "ok", "charge_id": "ch-1"}}
    (row,) = execution.rows("payment", "charge")
    assert (row.amount, row.ref, row.delivery, row.correlation_id) == (40, "ch-1", entry.seq, "order-7")
    assert row.time == entry.time
    assert execution.participants["payment"].state.requests == [("POST", "/charges")]


@BOTH
def test_fail_is_a_connect_error(saga: Saga) -> None:
    execution = run(saga, FailBeforeEffect(P("payment.charge#1")))
    assert execution.result["errors"] == ["ConnectError"]
    assert charges(execution) == [(1, "failed", "fail"), (2, "ok", None)]
    assert len(execution.rows("payment", "charge")) == 1
    # the participant never saw the failed request
    assert execution.participants["payment"].state.requests == [("POST", "/charges")]


@BOTH
def test_timeout_is_a_read_timeout_after_the_call_timeout(saga: Saga) -> None:
    execution = run(saga, Timeout(P("payment.charge#1")))
    assert execution.result["errors"] == ["ReadTimeout"]
    assert charges(execution) == [(1, "timed-out", "timeout"), (2, "ok", None)]
    first, second = execution.trace
    assert 1.0 + 0.2 <= second.time - first.time <= 1.0 + 0.2 + 0.015
    assert len(execution.rows("payment", "charge")) == 1


@BOTH
def test_lose_reply_is_applied_once_and_the_keyed_retry_gets_the_stored_reply(saga: Saga) -> None:
    execution = run(saga, LoseReply(P("payment.charge#1")))
    assert execution.result == {"status": "completed", "errors": ["ReadTimeout"]}
    assert charges(execution) == [(1, "reply-lost", "lose-reply"), (2, "ok", None)]
    lost, retry = execution.trace
    assert lost.reply == {"status": 201, "json": {"status": "ok", "charge_id": "ch-1"}}
    assert retry.reply == {"status": 200, "json": {"status": "ok", "charge_id": "ch-1"}}
    (row,) = execution.rows("payment", "charge")
    assert row.delivery == lost.seq
    # the service did see both requests
    assert execution.participants["payment"].state.requests == [("POST", "/charges"), ("POST", "/charges")]


@BOTH
def test_refuse_goes_through_the_participants_state(saga: Saga) -> None:
    execution = run(saga, Refuse(P("payment.charge#1")))
    (entry,) = execution.trace
    assert (entry.outcome, entry.fault) == ("ok", "refuse")
    assert entry.reply == {"status": 402, "json": {"status": "refused", "reason": "card_declined"}}
    assert execution.status == "compensated"
    assert execution.rows() == []


@BOTH
def test_outage_then_compensation(saga: Saga) -> None:
    execution = run(saga, Outage(P("payment.charge#1")))
    assert execution.result["errors"] == ["ConnectError"] * 3
    assert charges(execution) == [(1, "failed", "outage"), (2, "failed", "outage"), (3, "failed", "outage")]
    refund = execution.trace[-1]
    assert (refund.point, refund.outcome) == ("payment.refund#1", "ok")
    assert refund.request == {"method": "POST", "path": "/refunds", "json": {"charge_key": KEY}}
    assert refund.key == "order-7:refund"
    assert execution.status == "compensated"


@BOTH
def test_late_copies_land_after_the_saga_finished(saga: Saga) -> None:
    # for the async saga this lands on the harness' own event loop after the saga's one closed
    execution = run(saga, Duplicate(P("payment.charge#1"), lag=30.0))
    assert charges(execution) == [(1, "ok", "duplicate lag=30"), (1, "late", "duplicate lag=30")]
    assert execution.trace[-1].time >= 30.0
    assert execution.trace[-1].reply == {"status": 200, "json": {"status": "ok", "charge_id": "ch-1"}}
    assert len(execution.rows("payment", "charge")) == 1
    assert execution.status == "completed"


@BOTH
def test_a_long_delay_holds_the_http_request(saga: Saga) -> None:
    execution = run(saga, Delay(P("payment.charge#1"), seconds=30.0))
    assert charges(execution) == [(1, "held", "delay seconds=30"), (2, "ok", None), (1, "late", "delay seconds=30")]
    assert execution.result["errors"] == ["ReadTimeout"]
    assert len(execution.rows("payment", "charge")) == 1


@BOTH
def test_a_duplicate_is_sent_to_the_service_twice_and_deduped(saga: Saga) -> None:
    execution = run(saga, Duplicate(P("payment.charge#1")))
    assert charges(execution) == [(1, "ok", "duplicate lag=0"), (1, "copy", "duplicate lag=0")]
    assert execution.participants["payment"].state.requests == [("POST", "/charges"), ("POST", "/charges")]
    assert execution.trace[1].reply == {"status": 200, "json": {"status": "ok", "charge_id": "ch-1"}}
    assert len(execution.rows("payment", "charge")) == 1


def test_an_async_saga_that_never_gives_up_is_halted() -> None:
    async def forever(services: Any, order: Any) -> str:
        while True:
            try:
                await services.payment.post("/charges", json={"order_id": "order-7", "amount": 40})
                return "completed"
            except httpx.TransportError:
                await services.clock.asleep(1.0)

    saga = Saga("forever", steps=STEPS, participants=http_participants(asynchronous=True), run=forever, input=ORDER)
    execution = run(saga, Outage(P("payment.charge#1")))
    assert execution.status == "halted"
    assert execution.halted == "made more than 200 calls"
    assert len(execution.trace) == 200


def test_a_body_that_is_not_json_is_kept_as_text() -> None:
    def saga_run(services: Any, order: Any) -> str:
        services.payment.post("/refunds", content=b"charge_key=order-7:charge", headers={"Idempotency-Key": "r"})
        return "completed"

    def make() -> dict[str, object]:
        def handler(request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, text="refunded")

        return {"payment": HttpParticipant(httpx.MockTransport(handler), ROUTES)}

    saga = Saga("text", steps=STEPS, participants=make, run=saga_run, input=ORDER)
    (entry,) = run_plan(saga).trace
    assert entry.request == {"method": "POST", "path": "/refunds", "body": "charge_key=order-7:charge"}
    assert entry.reply == {"status": 200, "body": "refunded"}
    assert entry.key == "r"


@BOTH
def test_http_traces_are_deterministic(saga: Saga) -> None:
    plan = FaultPlan((LoseReply(P("payment.charge#1")), Duplicate(P("payment.charge#2"), lag=30.0)))
    assert trace_to_json(run_plan(saga, plan).trace) == trace_to_json(run_plan(saga, plan).trace)


def test_the_injected_error_carries_the_request() -> None:
    seen: list[httpx.TransportError] = []

    def saga_run(services: Any, order: Any) -> str:
        try:
            services.payment.post("/charges", json={"order_id": "order-7", "amount": 40})
        except httpx.TransportError as exc:
            seen.append(exc)
            return "compensated"
        return "completed"

    saga = Saga("http-errors", steps=STEPS, participants=http_participants(), run=saga_run, input=ORDER)
    run(saga, LoseReply(P("payment.charge#1")))
    (error,) = seen
    assert isinstance(error, httpx.ReadTimeout)
    assert error.request.url.path == "/charges"
    assert "payment.charge#1" in str(error)


# -- routes ------------------------------------------------------------------------------------


def _one_call(method: str, path: str) -> Callable[[Any, Any], str]:
    def saga_run(services: Any, order: Any) -> str:
        services.payment.request(method, path, json={"charge_key": KEY})
        return "completed"

    return saga_run


def test_an_unknown_route_names_the_request() -> None:
    saga = Saga(
        "lost", steps=STEPS, participants=http_participants(), run=_one_call("POST", "/charge-backs"), input=ORDER
    )
    with pytest.raises(SagaDefinitionError) as info:
        run_plan(saga)
    message = str(info.value)
    assert "POST http://participant/charge-backs matches no route" in message
    assert "POST /charges -> charge" in message
    assert "POST /refunds -> refund" in message


def test_the_method_is_part_of_the_route() -> None:
    saga = Saga("get", steps=STEPS, participants=http_participants(), run=_one_call("GET", "/charges"), input=ORDER)
    with pytest.raises(SagaDefinitionError, match="GET http://participant/charges matches no route"):
        run_plan(saga)


def test_the_most_specific_route_wins() -> None:
    routes = {"charge": "POST /charges", "refund": "post /charges/refunds/"}
    saga = Saga(
        "nested",
        steps=STEPS,
        participants=http_participants(routes=routes),
        run=_one_call("POST", "/charges/refunds/ch-1"),
        input=ORDER,
    )
    execution = run_plan(saga)
    assert [e.point for e in execution.trace] == ["payment.refund#1"]
    assert execution.trace[0].request["path"] == "/charges/refunds/ch-1"
    # a path that only shares a prefix of characters is not under the route
    saga = Saga(
        "prefix",
        steps=STEPS,
        participants=http_participants(routes=routes),
        run=_one_call("POST", "/chargesX"),
        input=ORDER,
    )
    with pytest.raises(SagaDefinitionError, match="matches no route"):
        run_plan(saga)


def test_a_route_with_path_parameters_matches_one_segment_each() -> None:
    # OpenAPI paths hold {parameters}: /charges/{charge_id}/refunds is the refund of any charge.
    routes = {"charge": "POST /charges", "refund": "POST /charges/{charge_id}/refunds"}
    saga = Saga("templated", steps=STEPS, participants=http_participants(routes=routes), run=_one_call("POST", "/charges/ch-1/refunds"), input=ORDER)
    assert [e.point for e in run_plan(saga).trace] == ["payment.refund#1"]
    # a parameter is one segment, not several
    saga = Saga("too-deep", steps=STEPS, participants=http_participants(routes={"charge": "POST /x", "refund": "POST /c/{id}/r"}), run=_one_call("POST", "/c/a/b/r"), input=ORDER)
    with pytest.raises(SagaDefinitionError, match="matches no route"):
        run_plan(saga)


def test_a_root_route_takes_every_path_under_it() -> None:
    # "a request whose path starts with that path is that operation": every path starts with "/"
    saga = Saga(
        "root",
        steps=[Step("payment", "charge")],
        participants=http_participants(routes={"charge": "POST /"}),
        run=_one_call("POST", "/charges"),
        input=ORDER,
    )
    execution = run_plan(saga)
    assert [e.point for e in execution.trace] == ["payment.charge#1"]


def test_a_route_to_an_operation_no_step_declares() -> None:
    routes = {**ROUTES, "void": "POST /voids"}
    saga = Saga(
        "void", steps=STEPS, participants=http_participants(routes=routes), run=_one_call("POST", "/voids"), input=ORDER
    )
    with pytest.raises(SagaDefinitionError, match="route 'void' is not an operation of any step"):
        run_plan(saga)


@pytest.mark.parametrize("route", ["/charges", "POST charges", "", "POST"])
def test_routes_must_be_method_and_path(route: str) -> None:
    with pytest.raises(SagaDefinitionError) as info:
        HttpParticipant(httpx.MockTransport(lambda r: httpx.Response(200)), {"charge": route})
    assert "'charge'" in str(info.value)
    assert "POST /charges" in str(info.value)


def test_a_sync_client_needs_a_sync_transport() -> None:
    class AsyncOnly(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, json={"status": "ok"})

    saga = Saga(
        "mismatch",
        steps=STEPS,
        participants=lambda: {"payment": HttpParticipant(AsyncOnly(), ROUTES)},
        run=_one_call("POST", "/charges"),
        input=ORDER,
    )
    with pytest.raises(SagaDefinitionError, match="a sync client needs a sync transport"):
        run_plan(saga)


def test_an_async_client_needs_an_async_transport() -> None:
    class SyncOnly(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, json={"status": "ok"})

    async def saga_run(services: Any, order: Any) -> str:
        await services.payment.post("/charges", json={})
        return "completed"

    saga = Saga(
        "mismatch-async",
        steps=STEPS,
        participants=lambda: {"payment": HttpParticipant(SyncOnly(), ROUTES, asynchronous=True)},
        run=saga_run,
        input=ORDER,
    )
    with pytest.raises(SagaDefinitionError, match="an async client needs an async transport"):
        run_plan(saga)


# -- plain calls and httpx: the same verdict ---------------------------------------------------


def _charge_with_retries(charge_once: Callable[[], dict[str, Any]], services: Any) -> str:
    """The saga's logic, whatever the transport: retry a keyless charge on transport errors."""
    for attempt in range(3):
        if attempt:
            services.clock.sleep(0.2)
        try:
            reply = charge_once()
        except (TimeoutError, ConnectionError, httpx.TransportError):
            continue
        return "completed" if reply["status"] == "ok" else "compensated"
    return "compensated"


def _plain_keyless(services: Any, order: Any) -> str:
    return _charge_with_retries(
        lambda: services.payment.charge(order_id=order["order_id"], amount=order["amount"]), services
    )


def _http_keyless(services: Any, order: Any) -> str:
    return _charge_with_retries(
        lambda: services.payment.post(
            "/charges", json={"order_id": order["order_id"], "amount": order["amount"]}
        ).json(),
        services,
    )


def _plain_keyed(services: Any, order: Any) -> str:
    return _charge_with_retries(
        lambda: services.payment.charge(order_id=order["order_id"], amount=order["amount"], idempotency_key=KEY),
        services,
    )


def _http_keyed(services: Any, order: Any) -> str:
    return _charge_with_retries(
        lambda: services.payment.post(
            "/charges",
            json={"order_id": order["order_id"], "amount": order["amount"]},
            headers={"Idempotency-Key": KEY},
        ).json(),
        services,
    )


def _pair(plain_run: Callable[[Any, Any], str], http_run: Callable[[Any, Any], str]) -> tuple[Saga, Saga]:
    plain = Saga("plain", steps=STEPS, participants=lambda: {"payment": Payment()}, run=plain_run, input=ORDER)
    http = Saga("http", steps=STEPS, participants=http_participants(), run=http_run, input=ORDER)
    return plain, http


def test_a_keyless_charge_double_charges_under_lose_reply_over_either_transport() -> None:
    plan = FaultPlan((LoseReply(P("payment.charge#1")),))
    no_double_charge = no_double_effect(STEPS[0])
    verdicts = []
    for saga in _pair(_plain_keyless, _http_keyless):
        execution = run_plan(saga, plan)
        assert execution.status == "completed"
        violations = check(execution, [no_double_charge])
        assert [v.invariant for v in violations] == ["no_double_charge"]
        assert len(violations[0].evidence) == 2
        assert [r.ref for r in violations[0].evidence] == ["ch-1", "ch-2"]
        verdicts.append(([(e.point, e.outcome) for e in execution.trace], violations[0].message))
    assert verdicts[0] == verdicts[1]
    assert verdicts[0][1] == "payment.charge took effect 2 times for order-7"


def test_a_keyed_charge_holds_over_either_transport() -> None:
    plan = FaultPlan((LoseReply(P("payment.charge#1")),))
    for saga in _pair(_plain_keyed, _http_keyed):
        execution = run_plan(saga, plan)
        assert check(execution, [no_double_effect(STEPS[0])]) == []
        assert len(execution.rows("payment", "charge")) == 1
