"""Each reference service conforms to its checked-in OpenAPI contract under every Schemathesis
check (negative data included), in process and over loopback; the stateful run chains each
forward step to its compensation through the contracts' links; a provider that breaks its
contract (a renamed reply field, a cancellation that crashes the second time, data it should
refuse) is caught by the matching check on the matching operation; and a bad document or a URL
where nothing answers fails in seconds, naming it."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from broken_providers import crashing_shipping_app

from saga_verify import SagaVerifyError
from saga_verify.contracts import (
    ConformanceError,
    ConformanceResult,
    ContractError,
    ProviderUnreachableError,
    SpecError,
    check_conformance,
    serve_asgi,
)
from saga_verify.errors import OptionError
from saga_verify.reference._participants import Inventory, Payment
from saga_verify.reference.services import SERVICES, create_app

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts" / "openapi"
#: Small and seeded: the fast tier stays fast and every run sends the same data (keys aside).
FAST = {"max_examples": 3, "seed": 0}
#: For tests that count the stateful phase's transitions: with 3 examples, whether a link is
#: followed depends on which of the other operations (GET /events, GET /health) the phase picks.
LINKED = {"max_examples": 10, "seed": 0}
#: The reference services are strict about JSON types (2.0 is not an integer to them).
STRICT = {"strict_integers": True}
#: Each forward step's link to its compensation, as Schemathesis names it.
LINKS = {
    "inventory": "POST /reservations -> [201] Release -> POST /releases",
    "payment": "POST /charges -> [201] Refund -> POST /refunds",
    "shipping": "POST /shipments -> [201] Cancel -> POST /cancellations",
}
COMPENSATION = {"inventory": "release", "payment": "refund", "shipping": "cancel"}

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def spec(service: str) -> Path:
    return CONTRACTS / f"{service}.yaml"


# --- test doubles -----------------------------------------------------------------------------------


class _Warehouse(dict[str, int]):
    """Stock of every SKU anyone asks for (Schemathesis invents SKUs; the reference stocks one)."""

    PLENTY = 10**12

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key, self.PLENTY)

    def __missing__(self, key: str) -> int:
        return self.PLENTY


class AmpleInventory(Inventory):
    """The reference inventory with plenty of every SKU, so generated reservations succeed and
    the stateful run has reservations to release. Its methods are the reference's."""

    def __init__(self) -> None:
        super().__init__()
        self.stock = _Warehouse()


class Recorded:
    """An ASGI app that records every request it serves (method, path, key, body, status)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[tuple[str, str, str | None, bytes, int]] = []

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body, receive = await _read_body(receive)
        status = 0

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, receive, sending)
        key = next((v.decode("latin-1") for k, v in scope["headers"] if k.lower() == b"idempotency-key"), None)
        self.seen.append((scope["method"], scope["path"], key, body, status))

    def statuses(self, path: str) -> Counter[int]:
        return Counter(status for _, seen_path, _, _, status in self.seen if seen_path == path)


async def _read_body(receive: Receive) -> tuple[bytes, Receive]:
    """The whole request body, and a ``receive`` that hands it on to the app."""
    chunks, more = [], True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    body = b"".join(chunks)
    return body, _handing(body, receive)


def _handing(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives ``body`` once, then whatever the client sends next (a disconnect)."""
    handed = False

    async def again() -> Message:
        nonlocal handed
        if not handed:
            handed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again


class RenamedChargeId(Payment):
    """Broken (a): the charge reply calls ``charge_id`` ``id``."""

    def charge(self, *, order_id: str, amount: int, idempotency_key: str | None = None) -> dict[str, Any]:
        reply = super().charge(order_id=order_id, amount=amount, idempotency_key=idempotency_key)
        if reply.get("status") == "ok":
            return {"status": "ok", "id": reply["charge_id"]}
        return reply


def accepting_qty_zero(app: Any) -> Callable[[Message, Receive, Send], Awaitable[None]]:
    """Broken (d): a front that "fixes" a reservation of 0 units into 1 and lets it through."""

    async def front(scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/reservations":
            body, _ = await _read_body(receive)
            try:
                data = json.loads(body)
            except ValueError:
                data = None
            if isinstance(data, dict) and data.get("qty") == 0:
                body = json.dumps({**data, "qty": 1}).encode()
                headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"content-length"]
                scope = {**scope, "headers": [*headers, (b"content-length", str(len(body)).encode())]}
            receive = _handing(body, receive)
        await app(scope, receive, send)

    return front


def conformance_failure(**options: Any) -> ConformanceResult:
    """The result a failing run raises with: a ConformanceError, which is a SagaVerifyError (and an
    AssertionError, so pytest reports it as a failed check), whose message is the report."""
    with pytest.raises(SagaVerifyError) as caught:
        check_conformance(**options)
    assert isinstance(caught.value, ConformanceError)
    assert isinstance(caught.value, ContractError)
    assert isinstance(caught.value, AssertionError)
    result = caught.value.result
    assert isinstance(result, ConformanceResult)
    assert str(caught.value) == result.report()
    return result


# --- the reference services conform ----------------------------------------------------------------


@pytest.mark.parametrize("service", list(SERVICES))
def test_each_reference_service_conforms_in_process(service):
    app = Recorded(create_app(service))
    result = check_conformance(spec(service), app, **LINKED, **STRICT)
    assert result.ok, result.report()
    assert result.failures == ()
    assert result.errors == ()
    assert sorted(result.operations) == sorted([f"POST {op.path}" for op in SERVICES[service].operations] + ["GET /events", "GET /health"])
    assert result.phases["coverage"] == result.phases["fuzzing"] == "success"
    assert result.target == "asgi:Recorded"
    assert result.seed == 0
    assert {"not_a_server_error", "status_code_conformance", "content_type_conformance", "response_schema_conformance",
            "response_headers_conformance", "negative_data_rejection", "positive_data_acceptance"} <= set(result.checks)
    # Negative data was sent, and rejected with the contract's 422; valid data was accepted.
    forward = SERVICES[service].operations[0]
    statuses = app.statuses(forward.path)
    assert statuses[422] >= 5, statuses
    assert statuses[forward.ok_status] + statuses[forward.refused_status] >= 1, statuses
    # A key of valid length is never sent with two different requests (its provider would rightly
    # reject the second); only keys Schemathesis generated invalid (empty, too long) repeat.
    requests_by_key: dict[str, set[tuple[str, str, bytes]]] = {}
    for method, path, key, body, _ in app.seen:
        # (Requests with a method the operation lacks are answered 405 whatever their key.)
        if method == "POST" and key is not None and 1 <= len(key) <= 200:
            requests_by_key.setdefault(key, set()).add((method, path, body))
    assert requests_by_key
    assert all(len(requests) == 1 for requests in requests_by_key.values())
    if service in ("payment", "shipping"):
        # The stateful run chained the forward step to its compensation through the contract's link,
        # carrying the forward request's key into the compensation's body: something really was undone.
        assert result.links == 1
        assert result.transitions[LINKS[service]] >= 1, result.transitions
        assert Counter(row.action for row in app.app.state.participant.ledger.rows)[COMPENSATION[service]] >= 1
    if service == "notification":
        assert (result.links, result.transitions) == (0, {})
        assert result.phases["stateful"] == "skip (not_applicable)"


def test_the_order_service_conforms_with_its_saga_running_against_the_participants():
    from saga_verify._world._asgi import SyncASGITransport
    from saga_verify.reference.services._order_app import create_order_app

    # Plenty of every SKU, so generated orders get past the reservation to the charge.
    participants = {name: create_app(name, participant=AmpleInventory() if name == "inventory" else None) for name in SERVICES}
    order = create_order_app({name: SyncASGITransport(app) for name, app in participants.items()})
    try:
        result = check_conformance(spec("order"), order, **LINKED, **STRICT)
    finally:
        order.state.close()
    assert result.ok, result.report()
    assert sorted(result.operations) == ["GET /events", "GET /health", "GET /orders/{order_id}", "POST /orders"]
    # The stateful run placed orders and asked for them again through the contract's link.
    assert result.transitions["POST /orders -> [201] Order -> GET /orders/{order_id}"] >= 1, result.transitions
    charged = [row for row in participants["payment"].state.participant.ledger.rows if row.action == "charge"]
    assert charged, "no order reached the payment service"


def test_a_reference_service_conforms_over_loopback():
    with serve_asgi(create_app("payment", inspect=True)) as url:
        result = check_conformance(spec("payment"), url, **LINKED, **STRICT)
        ledger = httpx.get(f"{url}/_inspect/ledger").json()
    assert result.ok, result.report()
    assert result.target == url
    assert result.transitions[LINKS["payment"]] >= 1
    assert Counter(row["action"] for row in ledger)["refund"] >= 1


@pytest.mark.slow
@pytest.mark.parametrize("service", ["inventory", "shipping", "notification"])
def test_the_other_reference_services_conform_over_loopback(service):
    participant = AmpleInventory() if service == "inventory" else None
    with serve_asgi(create_app(service, participant=participant)) as url:
        result = check_conformance(spec(service), url, **LINKED, **STRICT)
    assert result.ok, result.report()
    if service in LINKS:
        assert result.transitions[LINKS[service]] >= 1


def test_the_stateful_run_releases_what_it_reserved():
    """The reference stocks one SKU, and Schemathesis invents others, so every generated
    reservation is refused (409, in the contract) and there is nothing to release. With stock of
    everything, the stateful run follows the link from each reservation to its release."""
    app = create_app("inventory", participant=AmpleInventory())
    result = check_conformance(spec("inventory"), app, **LINKED, **STRICT)
    assert result.ok, result.report()
    assert result.links == 1
    assert result.phases["stateful"] == "success"
    assert result.transitions[LINKS["inventory"]] >= 1, result.transitions
    actions = Counter(row.action for row in app.state.participant.ledger.rows)
    assert actions["release"] >= 1, actions


def test_stateful_can_be_turned_off():
    result = check_conformance(spec("payment"), create_app("payment"), max_examples=1, seed=0, **STRICT, stateful=False)
    assert result.ok, result.report()
    assert result.transitions == {}
    assert result.phases["stateful"] == "skip (disabled)"


# --- broken providers are caught by the matching check ------------------------------------------------


def test_a_reply_field_renamed_breaks_response_schema_conformance():
    app = create_app("payment", participant=RenamedChargeId())
    result = conformance_failure(spec=spec("payment"), app_or_url=app, **FAST, **STRICT)
    [failure] = result.failures_of("response_schema_conformance")
    assert failure.operation == "POST /charges"
    assert "charge_id" in failure.message
    assert "required property" in failure.message
    assert failure.reproduce.startswith("curl -X POST")
    assert "http://testserver/charges" in failure.reproduce
    # The idempotency key is printed, not hidden as [Filtered].
    assert "[Filtered]" not in failure.reproduce
    assert "Idempotency-Key: sv" in failure.reproduce
    assert {f.operation for f in result.failures} == {"POST /charges"}
    report = result.report()
    assert report.startswith(f"OpenAPI conformance of asgi:FastAPI to {spec('payment')}: 1 failure(s), 0 error(s)")
    assert "\n  1. response_schema_conformance on POST /charges (coverage): Response violates schema: " in report
    assert "\n    reproduce:\n      curl -X POST " in report


def test_a_cancellation_that_crashes_the_second_time_is_a_server_error():
    result = conformance_failure(spec=spec("shipping"), app_or_url=crashing_shipping_app(), **FAST, **STRICT)
    [failure] = result.failures_of("not_a_server_error")
    assert failure.operation == "POST /cancellations"
    assert failure.message == "Server error"
    assert "/cancellations" in failure.reproduce
    # 500 is not in the contract either.
    [undocumented] = result.failures_of("status_code_conformance")
    assert undocumented.operation == "POST /cancellations"
    assert undocumented.message == "Undocumented status code: Received: 500; Documented: 200, 409, 422"
    assert {f.operation for f in result.failures} == {"POST /cancellations"}


def test_accepting_a_reservation_of_zero_units_breaks_negative_data_rejection():
    # (AmpleInventory: with the reference's stock the let-through request would be refused as out
    # of stock, a 4xx, and count as rejected; test_the_stateful_run_releases_what_it_reserved is
    # the control, the same provider without the front.)
    app = accepting_qty_zero(create_app("inventory", participant=AmpleInventory()))
    result = check_conformance(spec("inventory"), app, **FAST, **STRICT, raise_on_failure=False)
    assert not result.ok
    [failure] = result.failures_of("negative_data_rejection")
    assert failure.operation == "POST /reservations"
    assert failure.message.startswith("Schema-violating request accepted: Invalid data should have been rejected")
    assert "Invalid component: in body - qty: Value smaller than minimum" in failure.message
    assert '"qty": 0' in failure.reproduce
    assert {f.check for f in result.failures} == {"negative_data_rejection"}


def test_exclude_checks_skips_a_check():
    app = create_app("payment", participant=RenamedChargeId())
    result = check_conformance(
        spec("payment"), app, max_examples=1, seed=0, **STRICT, exclude_checks=["response_schema_conformance"]
    )
    assert result.ok, result.report()
    assert "response_schema_conformance" not in result.checks
    assert "negative_data_rejection" in result.checks


# --- bad input fails fast, naming what is wrong --------------------------------------------------------


def test_a_missing_document_is_named(tmp_path):
    missing = tmp_path / "nowhere" / "payment.yaml"
    started = time.monotonic()
    with pytest.raises(SpecError, match=f"OpenAPI document {missing} does not exist"):
        check_conformance(missing, create_app("payment"))
    assert time.monotonic() - started < 2


@pytest.mark.parametrize(
    ("text", "suffix", "complaint"),
    [
        ("openapi: 3.1.0\npaths: [\n", ".yaml", "is not valid YAML"),
        ('{"openapi": "3.1.0", "paths": {', ".json", "is not valid JSON"),
        ("- just\n- a list\n", ".yaml", "is not an OpenAPI document: it has no 'openapi' version field"),
        ("swagger: '2.0'\nopenapi: 2.0\npaths: {}\n", ".yaml", "is not an OpenAPI document"),
        ("openapi: 2.0.0\npaths: {}\n", ".yaml", "is OpenAPI 2.0.0; only OpenAPI 3.x"),
        ("openapi: 3.1.0\ninfo: {title: t, version: '1'}\n", ".yaml", "'paths' is missing"),
        (
            "openapi: 3.1.0\npaths:\n  /charges:\n    post:\n      requestBody:\n        content:\n"
            "          application/json:\n            schema: {$ref: '#/components/schemas/Nope'}\n"
            "      responses: {'201': {description: ok}}\n",
            ".yaml",
            "the $ref '#/components/schemas/Nope' at "
            "/paths/~1charges/post/requestBody/content/application~1json/schema points nowhere",
        ),
    ],
    ids=["broken YAML", "broken JSON", "a list", "version not text", "OpenAPI 2", "no paths", "dangling $ref"],
)
def test_a_malformed_document_is_named(tmp_path, text, suffix, complaint):
    bad = tmp_path / f"payment{suffix}"
    bad.write_text(text)
    started = time.monotonic()
    with pytest.raises(SpecError, match="payment") as caught:
        check_conformance(bad, create_app("payment"))
    assert str(bad) in str(caught.value)
    assert complaint in str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert time.monotonic() - started < 2


def test_an_unreachable_url_is_named_within_seconds():
    with serve_asgi(create_app("payment")) as url:
        pass  # served and stopped: nothing answers there now
    started = time.monotonic()
    with pytest.raises(ProviderUnreachableError, match=f"the provider at {url} does not answer"):
        check_conformance(spec("payment"), url)
    assert time.monotonic() - started < 6


@pytest.mark.parametrize(
    ("target", "options", "complaint"),
    [
        ("127.0.0.1:8000", {}, "an ASGI app or an http(s) URL"),
        (42, {}, "an ASGI app or an http(s) URL"),
        (None, {"max_examples": 0}, "max_examples must be at least 1"),
        (None, {"timeout": 0}, "timeout must be positive"),
        (None, {"exclude_checks": ["no_such_check"]}, "exclude_checks names no Schemathesis check: no_such_check; the checks are"),
    ],
)
def test_bad_options_are_named(target, options, complaint):
    with pytest.raises(OptionError) as caught:
        check_conformance(spec("payment"), target if target is not None else create_app("payment"), **options)
    assert complaint in str(caught.value)


def test_a_document_can_be_given_as_a_dict():
    import yaml

    document = yaml.safe_load(spec("notification").read_text())
    result = check_conformance(document, create_app("notification"), **FAST, **STRICT)
    assert result.ok, result.report()
    assert result.spec == "<dict>"


# --- slower: more data, more seeds -----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("service", list(SERVICES))
def test_every_reference_service_conforms_under_more_seeds_and_data(service, seed):
    participant = AmpleInventory() if service == "inventory" else None
    with serve_asgi(create_app(service, participant=participant)) as url:
        result = check_conformance(spec(service), url, max_examples=30, seed=seed, **STRICT)
    assert result.ok, result.report()
    if service in LINKS:
        assert result.transitions[LINKS[service]] >= 1


@pytest.mark.slow
def test_without_strict_integers_a_strict_provider_is_blamed_for_refusing_2_0():
    """Why ``strict_integers`` exists: JSON Schema calls 2.0 an integer, Schemathesis sends it as
    valid data, and the reference services (strict, like pydantic's strict mode) refuse it."""
    result = check_conformance(spec("payment"), create_app("payment"), max_examples=30, seed=0, raise_on_failure=False)
    refused = result.failures_of("positive_data_acceptance")
    assert refused, result.report()
    assert any(".0" in failure.reproduce for failure in refused)
