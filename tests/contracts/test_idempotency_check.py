"""The Idempotency-Key contract check: every reference service keeps it, in process, over loopback
and through a client of the caller's; a payment service that ignores the key (for refunds, for
charges) and a shipping service whose second cancellation crashes are caught by name; the
check's options change what it asks; and bad input fails fast, naming what is wrong."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from broken_providers import crashing_shipping_app
from fastapi.responses import JSONResponse

from saga_verify import SagaVerifyError
from saga_verify._world._asgi import SyncASGITransport
from saga_verify.contracts import (
    IDEMPOTENCY_CHECKS,
    ContractError,
    IdempotencyError,
    IdempotencyResult,
    IdempotentOperation,
    ProviderUnreachableError,
    check_idempotency,
    serve_asgi,
)
from saga_verify.errors import OptionError
from saga_verify.reference._broken import NonIdempotentRefund
from saga_verify.reference._participants import Payment
from saga_verify.reference.services import SERVICES, create_app

KEY = "Idempotency-Key"
REPLAYED = "Idempotency-Replayed"
_numbers = itertools.count(1)


def fresh(prefix: str) -> str:
    return f"{prefix}-{next(_numbers)}"


def after(path: str, body: Callable[[], dict[str, Any]], field: str) -> Callable[[httpx.Client], dict[str, Any]]:
    """A compensation's body factory: first make the forward request it undoes (with a key of its
    own), then name that request by its key in ``field``."""

    def make(client: httpx.Client) -> dict[str, Any]:
        key = fresh("forward")
        response = client.post(path, json=body(), headers={KEY: key})
        assert response.status_code == 201, response.text
        return {field: key}

    return make


def reservation() -> dict[str, Any]:
    return {"order_id": fresh("o"), "sku": "sku-1", "qty": 1}


def charge() -> dict[str, Any]:
    return {"order_id": fresh("o"), "amount": 100}


def shipment() -> dict[str, Any]:
    return {"order_id": fresh("o"), "reservation_id": fresh("res")}


#: Each reference service's operations, as a user of the check would describe them.
OPERATIONS: dict[str, list[IdempotentOperation]] = {
    "inventory": [
        IdempotentOperation("POST", "/reservations", lambda _: reservation()),
        IdempotentOperation("POST", "/releases", after("/reservations", reservation, "reserve_key"), compensation=True),
    ],
    "payment": [
        IdempotentOperation("POST", "/charges", lambda _: charge()),
        IdempotentOperation("POST", "/refunds", after("/charges", charge, "charge_key"), compensation=True),
    ],
    "shipping": [
        IdempotentOperation("POST", "/shipments", lambda _: shipment()),
        IdempotentOperation("POST", "/cancellations", after("/shipments", shipment, "shipment_key"), compensation=True),
    ],
    # A fixed body: the check derives the other body itself.
    "notification": [IdempotentOperation("POST", "/notifications", {"order_id": "o-1", "message": "on its way"})],
}


def ledger_of(app: Any) -> Callable[[], list[Any]]:
    """The effect probe of an app in this process: its participant's ledger rows."""
    return lambda: list(app.state.participant.ledger.rows)


def check(app: Any, service: str, **options: Any) -> IdempotencyResult:
    return check_idempotency(app, OPERATIONS[service], replay_header=REPLAYED, effects=ledger_of(app), **options)


def refused(app: Any, service: str, **options: Any) -> IdempotencyResult:
    with pytest.raises(SagaVerifyError) as caught:
        check(app, service, **options)
    assert isinstance(caught.value, IdempotencyError)
    assert isinstance(caught.value, ContractError)
    assert isinstance(caught.value, AssertionError)
    result = caught.value.result
    assert isinstance(result, IdempotencyResult)
    assert str(caught.value) == result.report()
    return result


def checks_and_operations(result: IdempotencyResult) -> set[tuple[str, str]]:
    return {(finding.check, finding.operation) for finding in result.findings}


# --- the reference services keep the contract ----------------------------------------------------


def test_the_table_covers_every_operation():
    assert sorted((name, op.path) for name, ops in OPERATIONS.items() for op in ops) == sorted(
        (name, op.path) for name, service in SERVICES.items() for op in service.operations
    )


@pytest.mark.parametrize("service", list(SERVICES))
def test_each_reference_service_keeps_the_contract_in_process(service):
    app = create_app(service)
    result = check(app, service)
    assert result.ok, result.report()
    assert result.findings == ()
    assert result.operations == tuple(f"POST {op.path}" for op in OPERATIONS[service])
    compensations = sum(op.compensation for op in OPERATIONS[service])
    expected = {name: len(OPERATIONS[service]) for name in IDEMPOTENCY_CHECKS}
    expected["compensation_twice_harmless"] = compensations
    assert result.checks == {name: count for name, count in expected.items() if count}
    assert result.report().startswith("Idempotency-Key contract of asgi:FastAPI: 0 finding(s)")


def test_a_reference_service_keeps_the_contract_over_loopback():
    with serve_asgi(create_app("payment", inspect=True)) as url, httpx.Client(base_url=url) as inspector:
        result = check_idempotency(
            url,
            OPERATIONS["payment"],
            replay_header=REPLAYED,
            effects=lambda: inspector.get("/_inspect/ledger").json(),
        )
    assert result.ok, result.report()
    assert result.target == url
    # Per operation: a request and its repeat, a conflict and the first again, one without a key;
    # the refund is also sent twice with keys of its own. (The factories' charges are not counted.)
    assert result.requests == 2 * (2 + 3 + 1) + 2


def test_a_client_of_the_callers_own_is_used_and_left_open():
    app = create_app("shipping")
    with httpx.Client(transport=SyncASGITransport(app), base_url="http://shipping") as client:
        result = check_idempotency(client, OPERATIONS["shipping"], replay_header=REPLAYED, effects=ledger_of(app))
        assert result.ok, result.report()
        assert result.target == "http://shipping"
        assert client.get("/health").status_code == 200  # still open


# --- broken providers are caught ---------------------------------------------------------------------


class KeylessCharge(Payment):
    """Broken: charges ignore the Idempotency-Key (every request charges again)."""

    def charge(self, *, order_id: str, amount: int, idempotency_key: str | None = None) -> dict[str, Any]:
        return super().charge(order_id=order_id, amount=amount, idempotency_key=None)


def test_a_refund_that_ignores_the_key_is_caught():
    result = refused(create_app("payment", participant=NonIdempotentRefund()), "payment")
    assert checks_and_operations(result) == {
        ("replay_marker", "POST /refunds"),
        ("no_second_effect", "POST /refunds"),
        ("same_key_other_body_rejected", "POST /refunds"),
        ("compensation_twice_harmless", "POST /refunds"),
    }
    [twice] = result.findings_of("compensation_twice_harmless")
    assert twice.message.startswith("the compensation sent twice caused a second effect: 1 new: ")
    assert '"refund"' in twice.message
    # The exchanges show the requests, with their keys, and the replies.
    first, second = twice.exchanges
    assert first.startswith("POST /refunds [Idempotency-Key: sv-idem-")
    assert first.split("->")[1] == second.split("->")[1]  # the same reply: only the probe tells
    [repeat] = result.findings_of("no_second_effect")
    assert repeat.message.startswith("the repeat took effect again: 1 new: ")
    [marker] = result.findings_of("replay_marker")
    assert "got Idempotency-Replayed=None on the repeat" in marker.message


def test_a_charge_that_ignores_the_key_is_caught():
    result = refused(create_app("payment", participant=KeylessCharge()), "payment")
    assert checks_and_operations(result) == {
        ("same_key_same_reply", "POST /charges"),
        ("replay_marker", "POST /charges"),
        ("no_second_effect", "POST /charges"),
        ("same_key_other_body_rejected", "POST /charges"),
        ("key_keeps_first_request", "POST /charges"),
    }
    [reply] = result.findings_of("same_key_same_reply")
    assert reply.message == (
        'the same key and body got 201 {"charge_id": "ch-2", "status": "ok"} '
        'after 201 {"charge_id": "ch-1", "status": "ok"}'
    )
    [conflict] = result.findings_of("same_key_other_body_rejected")
    assert conflict.message.startswith("the key of an earlier request, sent with another body, was answered 201 "
                                       "(expected 409 or 422) and took effect: 1 new: ")
    assert "same_key_same_reply on POST /charges: the same key and body got 201" in result.report()


def test_a_charge_that_ignores_the_key_is_caught_without_a_probe_or_a_marker():
    """The replies alone show it: a new charge id for a repeat, a reused key accepted."""
    app = create_app("payment", participant=KeylessCharge())
    result = check_idempotency(app, OPERATIONS["payment"], raise_on_failure=False)
    assert checks_and_operations(result) == {
        ("same_key_same_reply", "POST /charges"),
        ("same_key_other_body_rejected", "POST /charges"),
        ("key_keeps_first_request", "POST /charges"),
    }
    assert "replay_marker" not in result.checks
    assert "no_second_effect" not in result.checks


def test_a_cancellation_that_crashes_the_second_time_is_caught():
    result = refused(crashing_shipping_app(), "shipping")
    [twice] = result.findings_of("compensation_twice_harmless")
    assert twice.operation == "POST /cancellations"
    assert twice.message == "the compensation sent twice caused a server error (200, then 500)"
    assert " -> 500 " in twice.exchanges[1]
    assert "is gone" in twice.exchanges[1]
    # A retry with the same key crashes too: the repeat is not the stored reply.
    assert ("same_key_same_reply", "POST /cancellations") in checks_and_operations(result)
    assert {finding.operation for finding in result.findings} == {"POST /cancellations"}


# --- options ---------------------------------------------------------------------------------------------


def test_conflict_statuses_are_configurable():
    app = create_app("payment")
    result = check_idempotency(app, OPERATIONS["payment"], conflict_statuses=[409], raise_on_failure=False)
    assert checks_and_operations(result) == {
        ("same_key_other_body_rejected", "POST /charges"),
        ("same_key_other_body_rejected", "POST /refunds"),
    }
    assert "was answered 422 (expected 409)" in result.findings[0].message


def test_the_replay_marker_and_its_value_are_configurable():
    app = create_app("payment")
    wrong = check_idempotency(app, OPERATIONS["payment"], replay_header=REPLAYED, replay_value="yes",
                              raise_on_failure=False)
    assert {finding.check for finding in wrong.findings} == {"replay_marker"}
    assert "should carry Idempotency-Replayed: yes" in wrong.findings[0].message
    anything = check_idempotency(app, OPERATIONS["payment"], replay_header=REPLAYED, replay_value=None)
    assert anything.ok
    missing = check_idempotency(app, OPERATIONS["payment"], replay_header="X-Replayed", raise_on_failure=False)
    assert {finding.check for finding in missing.findings} == {"replay_marker"}


def test_a_provider_that_demands_a_key_fails_keyless_accepted():
    inner = create_app("notification")

    async def demanding(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not any(k.lower() == b"idempotency-key" for k, _ in scope["headers"]):
            await JSONResponse({"detail": "Idempotency-Key required"}, status_code=428)(scope, receive, send)
            return
        await inner(scope, receive, send)

    result = check_idempotency(demanding, OPERATIONS["notification"], raise_on_failure=False)
    [finding] = result.findings
    assert (finding.check, finding.operation) == ("keyless_accepted", "POST /notifications")
    assert finding.message == "a request without Idempotency-Key was answered 428, not 2xx"
    assert finding.exchanges[0].startswith("POST /notifications [no Idempotency-Key] ")


def test_a_body_the_provider_refuses_is_reported():
    bad = IdempotentOperation("POST", "/charges", {"order_id": "o-1", "amount": 0}, name="charge of nothing")
    result = check_idempotency(create_app("payment"), [bad], raise_on_failure=False)
    assert ("accepts_valid_body", "charge of nothing") in checks_and_operations(result)
    assert "a valid body was answered 422, not 2xx (is the body valid?)" in result.report()


# --- bad input ---------------------------------------------------------------------------------------------


def test_an_unreachable_provider_is_named_within_seconds():
    with serve_asgi(create_app("payment")) as url:
        pass  # served and stopped: nothing answers there now
    started = time.monotonic()
    with pytest.raises(ProviderUnreachableError, match=f"the provider at {url} did not answer POST /charges"):
        check_idempotency(url, OPERATIONS["payment"])
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    ("target", "operations", "options", "complaint"),
    [
        ("payment:8000", OPERATIONS["payment"], {}, "not an http(s) base URL: 'payment:8000'"),
        (42, OPERATIONS["payment"], {}, "needs an httpx.Client, a base URL or an ASGI app, not 42"),
        (None, [], {}, "needs at least one operation"),
        (None, [("POST", "/charges")], {}, "not an IdempotentOperation: ('POST', '/charges')"),
        (None, OPERATIONS["payment"], {"conflict_statuses": [200]}, "conflict_statuses must be 4xx status codes"),
        (None, [IdempotentOperation("POST", "/charges", {"amount": True})], {},
         'cannot derive a different body from {"amount": true}; give other_body'),
        (None, [IdempotentOperation("POST", "/charges", lambda _: {"order_id": "o-1", "amount": 1})], {},
         "the other body equals the first"),
        (None, [IdempotentOperation("POST", "/charges", lambda _: ["not", "an", "object"])], {},
         "a body factory must return a mapping"),
    ],
    ids=["not a URL", "not a target", "no operations", "a tuple", "2xx conflict", "no other body",
         "factory repeats itself", "factory returns a list"],
)
def test_bad_input_is_named(target, operations, options, complaint):
    with pytest.raises(OptionError) as caught:
        check_idempotency(target if target is not None else create_app("payment"), operations, **options)
    assert complaint in str(caught.value)


def test_an_explicit_other_body_is_used():
    op = IdempotentOperation(
        "POST", "/notifications", {"order_id": "o-1", "message": "hi"}, other_body={"order_id": "o-1", "message": "bye"}
    )
    app = create_app("notification")
    result = check_idempotency(app, [op], replay_header=REPLAYED, effects=ledger_of(app))
    assert result.ok, result.report()
