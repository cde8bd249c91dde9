"""Every reference service honours the order service's pacts; a provider that breaks one (a renamed
field, a refund that is not idempotent) is caught by name; and a mistake in the set-up (a state
with no handler, a handler that raises, a broken pact file, a provider that does not answer) fails
in seconds with a message that names it."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from saga_verify._world._asgi import SyncASGITransport
from saga_verify.contracts import (
    PactFileError,
    ProviderState,
    ProviderStateError,
    ProviderUnreachableError,
    ProviderVerificationError,
    serve_asgi,
    verify_provider,
)
from saga_verify.reference._broken import NonIdempotentRefund
from saga_verify.reference.services import create_app
from saga_verify.reference.services._event_producers import event_producer
from saga_verify.reference.services._provider_states import PROVIDER_STATES

PACTS = Path(__file__).resolve().parents[2] / "contracts" / "pacts"
SERVICES = ("inventory", "payment", "shipping", "notification")

Message = MutableMapping[str, Any]
ASGIApp = Callable[[Message, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]


STATES = PROVIDER_STATES


def pact_of(service: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((PACTS / f"order-{service}.json").read_text())
    return document


def write_pact(tmp_path: Path, document: dict[str, Any], name: str = "order-payment.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(document, indent=2))
    return path


@pytest.mark.parametrize("service", SERVICES)
def test_each_reference_service_honours_its_pacts(service: str) -> None:
    """Its HTTP pact with the order service and its message pact with the audit, in one run."""
    app = create_app(service, inspect=True)
    with httpx.Client(transport=SyncASGITransport(app), base_url=f"http://{service}") as client:
        result = verify_provider(service, app, PACTS, STATES[service], messages=event_producer(service, client))
    assert result.failures == ()
    audit = json.loads((PACTS / f"audit-{service}.json").read_text())
    descriptions = sorted(i["description"] for i in [*pact_of(service)["interactions"], *audit["interactions"]])
    assert sorted(i.description for i in result.interactions) == descriptions
    assert result.pact_files == (PACTS / f"audit-{service}.json", PACTS / f"order-{service}.json")


def test_a_provider_at_a_url_is_verified_too() -> None:
    with serve_asgi(create_app("payment", inspect=True)) as url:
        result = verify_provider("payment", url, PACTS / "order-payment.json", STATES["payment"])
    assert result.url == url
    assert len(result.interactions) == len(pact_of("payment")["interactions"])


def renaming(app: ASGIApp, old: str, new: str) -> ASGIApp:
    """The app, with the JSON field ``old`` of every reply renamed to ``new``."""

    async def renamed(
        scope: Message, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]
    ) -> None:
        if scope["type"] != "http":
            return await app(scope, receive, send)
        start: Message = {}
        chunks: list[bytes] = []

        async def rewrite(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = b"".join(chunks)
            reply = json.loads(body) if body else None
            if isinstance(reply, dict) and old in reply:
                body = json.dumps({new if k == old else k: v for k, v in reply.items()}).encode()
            headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
            await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})

        return await app(scope, receive, rewrite)

    return renamed


def test_a_provider_that_renames_a_field_fails_naming_the_interactions() -> None:
    broken = renaming(create_app("payment", inspect=True), "charge_id", "id")
    with pytest.raises(ProviderVerificationError) as caught:
        verify_provider("payment", broken, PACTS / "order-payment.json", STATES["payment"])
    failed = {r.description for r in caught.value.verification.failures}
    assert failed == {"a charge", "a charge replayed with its idempotency key"}
    message = str(caught.value)
    assert "provider 'payment'" in message
    assert "fails 2 of 7 interaction(s)" in message
    assert "FAILED  order: 'a charge'\n" in message
    assert "missing the following keys: charge_id" in message


def test_a_refund_that_is_not_idempotent_breaks_the_replay_contract() -> None:
    app = create_app("payment", participant=NonIdempotentRefund(), inspect=True)
    with pytest.raises(ProviderVerificationError) as caught:
        verify_provider("payment", app, PACTS / "order-payment.json", STATES["payment"])
    [failure] = caught.value.verification.failures
    assert failure.description == "a refund replayed with its idempotency key"
    assert failure.states == ("a charge was made and refunded",)
    assert any("Idempotency-Replayed" in m for m in failure.mismatches), failure.mismatches
    assert "'a refund replayed with its idempotency key'" in str(caught.value)


def test_a_state_without_a_handler_fails_fast_naming_the_state_and_the_file(tmp_path: Path) -> None:
    document = pact_of("payment")
    [declined] = [i for i in document["interactions"] if i["description"] == "a charge that is declined"]
    declined["providerStates"] = [{"name": "the card was stolen"}]
    path = write_pact(tmp_path, document)
    started = time.monotonic()
    with pytest.raises(ProviderStateError) as caught:
        verify_provider("payment", create_app("payment", inspect=True), tmp_path, STATES["payment"])
    assert time.monotonic() - started < 3
    assert f"'the card was stolen', needed in {path} by 'a charge that is declined'" in str(caught.value)


def test_a_state_handler_that_raises_is_reported_not_retried_for_minutes() -> None:
    def broken(state: ProviderState) -> None:
        raise RuntimeError("the test database is down")

    started = time.monotonic()
    with pytest.raises(ProviderVerificationError) as caught:
        verify_provider(
            "payment",
            create_app("payment", inspect=True),
            PACTS / "order-payment.json",
            {**STATES["payment"], "a charge was made": broken},
        )
    assert time.monotonic() - started < 10
    assert "state handler for 'a charge was made' raised RuntimeError: the test database is down" in str(caught.value)


def test_a_malformed_pact_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "order-payment.json"
    path.write_text('{"consumer": {"name": "order"}, "interactions": [')
    app = create_app("payment", inspect=True)
    with pytest.raises(PactFileError, match=rf"pact file {path} is not valid JSON"):
        verify_provider("payment", app, tmp_path, STATES["payment"])
    with pytest.raises(PactFileError, match=rf"pact file {path} is not valid JSON"):
        verify_provider("payment", app, path, STATES["payment"])
    path.write_text(json.dumps({"consumer": {"name": "order"}, "interactions": []}))
    with pytest.raises(PactFileError, match=rf"pact file {path} has no provider name"):
        verify_provider("payment", app, path, STATES["payment"])


def test_a_missing_pact_or_a_folder_without_one_is_named(tmp_path: Path) -> None:
    app = create_app("payment", inspect=True)
    missing = tmp_path / "order-payment.json"
    with pytest.raises(PactFileError, match=rf"pact file {missing} does not exist"):
        verify_provider("payment", app, missing, STATES["payment"])
    with pytest.raises(PactFileError, match=rf"no pact for provider 'payment' in {tmp_path}"):
        verify_provider("payment", app, tmp_path, STATES["payment"])
    with pytest.raises(PactFileError, match=r"order-inventory\.json is for provider 'inventory', not 'payment'"):
        verify_provider("payment", app, PACTS / "order-inventory.json", STATES["payment"])


def test_a_url_that_does_not_answer_is_named_within_seconds() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    started = time.monotonic()
    with pytest.raises(ProviderUnreachableError, match=rf"provider 'payment' at {url} does not answer"):
        verify_provider("payment", url, PACTS / "order-payment.json", STATES["payment"], timeout=2)
    assert time.monotonic() - started < 3


def test_a_failing_pending_interaction_is_reported_and_can_be_let_through(tmp_path: Path) -> None:
    document = pact_of("payment")
    for interaction in document["interactions"]:
        interaction["pending"] = interaction["description"] == "a refund replayed with its idempotency key"
    path = write_pact(tmp_path, document)

    def app() -> Any:
        return create_app("payment", participant=NonIdempotentRefund(), inspect=True)

    with pytest.raises(ProviderVerificationError, match=r"FAILED \(pending\)  order: 'a refund replayed"):
        verify_provider("payment", app(), path, STATES["payment"])
    result = verify_provider("payment", app(), path, STATES["payment"], fail_on_pending=False)
    [failure] = result.failures
    assert failure.pending
    assert failure.description == "a refund replayed with its idempotency key"


def v3_message_pact(v4: dict[str, Any]) -> dict[str, Any]:
    """The same message pact in the V3 format: top-level ``messages``, each body under ``contents``."""
    messages = [
        {
            "description": i["description"],
            "contents": i["contents"]["content"],
            "metadata": i.get("metadata", {}),
            "matchingRules": i.get("matchingRules", {}),
            "providerStates": i.get("providerStates", []),
        }
        for i in v4["interactions"]
    ]
    return {
        "consumer": v4["consumer"],
        "provider": v4["provider"],
        "messages": messages,
        "metadata": {"pactSpecification": {"version": "3.0.0"}},
    }


def test_a_v3_message_pact_is_verified(tmp_path: Path) -> None:
    audit = json.loads((PACTS / "audit-payment.json").read_text())
    path = write_pact(tmp_path, v3_message_pact(audit), "audit-payment.json")
    app = create_app("payment", inspect=True)
    with httpx.Client(transport=SyncASGITransport(app), base_url="http://payment") as client:
        result = verify_provider("payment", app, path, messages=event_producer("payment", client))
    assert sorted(i.description for i in result.interactions) == ["a payment.charged event", "a payment.refunded event"]
    assert result.failures == ()


def test_a_v3_message_pact_without_a_producer_fails_fast_naming_its_messages(tmp_path: Path) -> None:
    audit = json.loads((PACTS / "audit-payment.json").read_text())
    write_pact(tmp_path, v3_message_pact(audit), "audit-payment.json")
    with pytest.raises(ProviderStateError, match=r"'a payment\.charged event' in .*audit-payment\.json"):
        verify_provider("payment", create_app("payment"), tmp_path)


def test_a_json_file_that_is_not_a_pact_does_not_stop_the_verification(tmp_path: Path) -> None:
    write_pact(tmp_path, pact_of("payment"))
    (tmp_path / "package.json").write_text(json.dumps({"name": "shop-frontend", "version": "1.0.0"}))
    (tmp_path / "list.json").write_text("[1, 2, 3]")
    result = verify_provider("payment", create_app("payment", inspect=True), tmp_path, STATES["payment"])
    assert result.pact_files == (tmp_path / "order-payment.json",)
    assert result.failures == ()
