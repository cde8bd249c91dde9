"""Message pacts for the events the reference services publish.

Consumer side: the audit (saga_verify/reference/_audit.py) reads every service's events. For
each event type it is given the message its pact describes (pact's own message verification) and
must fold it into its account; the pact is written to contracts/pacts/audit-<service>.json.

Provider side: each service (the order service included) is verified against those pacts, its
events made by driving the service for real (`event_producer`) and read back from its outbox.
A publisher that renames an envelope field, or one that leaves a data field out, is caught."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from saga_verify._world._asgi import SyncASGITransport
from saga_verify.contracts import (
    ProviderStateError,
    ProviderVerificationError,
    consumer_pact,
    serve_asgi,
    verify_provider,
)
from saga_verify.reference._audit import KNOWN_EVENTS, Audit
from saga_verify.reference.services import create_app
from saga_verify.reference.services._event_producers import event_description, event_producer
from saga_verify.reference.services._events import EVENT_TYPES
from saga_verify.reference.services._order_app import create_order_app

PACTS = Path(__file__).resolve().parents[2] / "contracts" / "pacts"
PARTICIPANTS = ("inventory", "payment", "shipping", "notification")
#: The events each service's pact covers: all it publishes, except order.failed, which no request
#: to a healthy set of services can make (the audit's unit tests read it).
COVERED = {
    service: sorted(t for (s, _), t in EVENT_TYPES.items() if s == service and t != "order.failed")
    for service in (*PARTICIPANTS, "order")
}

#: One example value per data field the audit reads.
EXAMPLES = {
    "reservation_id": "res-1",
    "charge_id": "ch-1",
    "shipment_id": "sh-1",
    "message_id": "msg-1",
    "order_id": "order-1",
    "qty": 2,
    "amount": 100,
}


def expected_event(event_type: str, source: str) -> dict[str, Any]:
    """The consumer's expectation: exactly the fields the audit reads, any values of their types."""
    from pact import match

    data = {
        name: match.int(EXAMPLES[name]) if kind is int else match.str(EXAMPLES[name])
        for name, kind in KNOWN_EVENTS[event_type].items()
    }
    return {
        "type": event_type,
        "version": 1,
        "id": match.str(f"{source}-1"),
        "source": source,
        "correlation_id": match.str("order-1"),
        "data": data,
    }


def fold(event: dict[str, Any], metadata: dict[str, object]) -> None:
    """The audit's message handler, checked: the event counts once and lands in its order."""
    audit = Audit()
    assert audit.handle(event) is True
    assert audit.handle(event) is False  # a redelivery is recognised
    assert list(audit.orders) == [event["correlation_id"]]


@pytest.mark.parametrize("service", [*PARTICIPANTS, "order"])
def test_the_audit_writes_its_message_pact_with_each_publisher(service: str) -> None:
    with consumer_pact("audit", service, PACTS) as pact:
        for event_type in COVERED[service]:
            (
                pact.upon_receiving(event_description(event_type), "Async")
                .with_body(expected_event(event_type, service), "application/json")
            )
        pact.verify(fold, "Async")
    written = json.loads((PACTS / f"audit-{service}.json").read_text())
    assert sorted(i["description"] for i in written["interactions"]) == [event_description(t) for t in COVERED[service]]
    assert {i["type"] for i in written["interactions"]} == {"Asynchronous/Messages"}


def participant_apps() -> dict[str, Any]:
    return {name: create_app(name, inspect=True) for name in PARTICIPANTS}


def order_app() -> Any:
    return create_order_app({name: SyncASGITransport(app) for name, app in participant_apps().items()})


def app_of(service: str) -> Any:
    return order_app() if service == "order" else create_app(service, inspect=True)


@pytest.mark.parametrize("service", [*PARTICIPANTS, "order"])
def test_each_service_publishes_what_the_audit_expects(service: str) -> None:
    app = app_of(service)
    with httpx.Client(transport=SyncASGITransport(app), base_url=f"http://{service}") as client:
        result = verify_provider(
            service, app, PACTS / f"audit-{service}.json", messages=event_producer(service, client)
        )
    assert result.failures == ()
    assert sorted(i.description for i in result.interactions) == [event_description(t) for t in COVERED[service]]


def test_a_participant_verifies_its_http_and_message_pacts_in_one_run() -> None:
    from test_provider_verification import STATES

    app = create_app("payment", inspect=True)
    with httpx.Client(transport=SyncASGITransport(app), base_url="http://payment") as client:
        result = verify_provider("payment", app, PACTS, STATES["payment"], messages=event_producer("payment", client))
    assert result.failures == ()
    assert sorted(p.name for p in result.pact_files) == ["audit-payment.json", "order-payment.json"]
    kinds = json.loads((PACTS / "order-payment.json").read_text())["interactions"]
    assert len(result.interactions) == len(kinds) + len(COVERED["payment"])


class RenamedEnvelope:
    """A payment service whose events call the correlation id ``order``: an envelope change."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def produce(self, client: httpx.Client) -> Any:
        real = event_producer("payment", client)

        def produce(description: str) -> dict[str, Any]:
            event = real(description)
            event["order"] = event.pop("correlation_id")
            return event

        return produce


def test_a_publisher_that_renames_an_envelope_field_is_caught() -> None:
    app = create_app("payment", inspect=True)
    with (
        httpx.Client(transport=SyncASGITransport(app), base_url="http://payment") as client,
        pytest.raises(ProviderVerificationError) as caught,
    ):
        verify_provider("payment", app, PACTS / "audit-payment.json", messages=RenamedEnvelope(app).produce(client))
    report = str(caught.value)
    assert "a payment.charged event" in report
    assert "a payment.refunded event" in report
    assert "correlation_id" in report


def test_a_publisher_that_leaves_out_a_data_field_is_caught() -> None:
    app = create_app("payment", inspect=True)
    with httpx.Client(transport=SyncASGITransport(app), base_url="http://payment") as client:
        real = event_producer("payment", client)

        def without_amount(description: str) -> dict[str, Any]:
            event = real(description)
            del event["data"]["amount"]
            return event

        with pytest.raises(ProviderVerificationError) as caught:
            verify_provider("payment", app, PACTS / "audit-payment.json", messages=without_amount)
    assert "amount" in str(caught.value)


def test_message_interactions_without_a_producer_fail_fast_naming_them() -> None:
    with pytest.raises(ProviderStateError) as caught:
        verify_provider("payment", create_app("payment"), PACTS / "audit-payment.json")
    assert "'a payment.charged event'" in str(caught.value)
    assert "messages=" in str(caught.value)
    with pytest.raises(ProviderStateError) as caught:
        verify_provider(
            "payment", create_app("payment"), PACTS / "audit-payment.json", messages={"a payment.charged event": dict}
        )
    assert "'a payment.refunded event'" in str(caught.value)


def test_message_pacts_verify_against_a_provider_at_a_url() -> None:
    with serve_asgi(create_app("shipping", inspect=True)) as url, httpx.Client(base_url=url) as client:
        result = verify_provider("shipping", url, PACTS / "audit-shipping.json", messages=event_producer("shipping", client))
    assert result.failures == ()
    assert len(result.interactions) == len(COVERED["shipping"])
