"""Message pacts of the choreographed order saga, one per (consumer, publisher) pair of its
handlers (saga_verify/reference/_choreographed.py HANDLERS).

Consumer side: each consuming service states what it expects of every event it subscribes to,
built from the schema its handlers validate against, and pact's own message verification hands
that message to the service's real handler, which must accept and commit it (and ignore it when it
comes again). The pacts are written to contracts/pacts/choreography/<consumer>-<provider>.json.

Provider side: each publishing service is verified against them, every message made by running
the choreography and taken off the bus its outbox published to. A consumer that reads a field
the pact does not promise, and a publisher that renames a field a consumer reads, are caught."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from saga_verify.contracts import ProviderVerificationError, consumer_pact, verify_provider
from saga_verify.reference._choreographed import (
    HANDLERS,
    ORDER,
    ChoreographedService,
    OrderService,
    PaymentService,
    choreography,
)
from saga_verify.reference._choreography_contracts import consumed, event_description, message_producer
from saga_verify.reference._choreography_events import ENVELOPE_VERSION, event_schema

ROOT = Path(__file__).resolve().parents[2]
PACTS = ROOT / "contracts" / "pacts" / "choreography"
VERSIONS = ROOT / "fixtures" / "contracts" / "choreography_versions.py"
PAIRS = consumed()
PROVIDERS = sorted({provider for _, provider in PAIRS})
#: The event a saga starts with: caused by nothing, so its causation id is null.
FIRST = "order.placed"
#: The service classes of the reference choreography, by name.
CLASSES: dict[str, type[ChoreographedService]] = {
    name: type(service) for name, service in choreography("pacts", "saga_verify.reference:choreographed_order_saga").services().items()
}
#: One example per field; any other string field is "<name>-1".
EXAMPLES: dict[str, Any] = {"correlation_id": "order-1", "qty": 2, "amount": 100}
RFC3339_UTC = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$"


def expected_message(event_type: str) -> dict[str, Any]:
    """What a consumer of ``event_type`` expects: every field the schema its handler validates
    against requires, the constants as they are, anything else by its type."""
    from pact import match

    def like(name: str, schema: Mapping[str, Any]) -> Any:
        if "const" in schema:
            return schema["const"]
        if schema.get("format") == "date-time":
            return match.regex("2026-01-01T00:00:00Z", regex=RFC3339_UTC)
        if name == "causation_id":
            return None if event_type == FIRST else match.str("order-1:cause")
        if schema.get("type") == "integer":
            return match.int(EXAMPLES.get(name, schema.get("minimum", 1)))
        if schema.get("type") == "object":
            return {key: like(key, sub) for key, sub in schema["properties"].items()}
        return match.str(EXAMPLES.get(name, f"{name}-1"))

    schema = event_schema(event_type)
    assert schema["properties"]["version"]["const"] == ENVELOPE_VERSION
    return {name: like(name, sub) for name, sub in schema["properties"].items()}


class Bus:
    """What a handler is given as ``bus``: records what it publishes and why it rejects."""

    now = 0.0

    def __init__(self) -> None:
        self.published: list[dict[str, Any]] = []
        self.rejected: list[str] = []

    def publish(self, envelope: dict[str, Any]) -> None:
        self.published.append(envelope)

    def reject(self, reason: str) -> None:
        self.rejected.append(reason)

    def ack(self) -> None:
        """Handlers of the reference acknowledge by returning."""


def consumer(service: str, classes: Mapping[str, type[ChoreographedService]] = CLASSES) -> Callable[[Any, Any], None]:
    """The message handler pact feeds: every handler of ``service`` subscribed to the message's
    type, each on a fresh service holding what it needs to know (the order service, its order)."""

    def handle(message: Any, metadata: Any) -> None:
        event = json.loads(message) if isinstance(message, (str, bytes)) else message
        subscribed = [h for h in HANDLERS if h.service == service and h.on == event["type"]]
        assert subscribed, f"{service} has no handler for {event['type']}"
        for handler in subscribed:
            instance = classes[service]()
            if isinstance(instance, OrderService):
                instance.place({**ORDER, "order_id": event["correlation_id"]}, bus=Bus())
            bus = Bus()
            getattr(instance, handler.method)(event, bus=bus)
            assert bus.rejected == [], f"{service}.{handler.method} dead-lettered it: {bus.rejected}"
            assert event["id"] in instance.saved["processed"], f"{service}.{handler.method} did not commit it"
            again = Bus()
            getattr(instance, handler.method)(event, bus=again)
            assert again.published == [], "a redelivery was not recognised"
            assert again.rejected == [], "a redelivery was not recognised"

    return handle


@pytest.mark.parametrize(("service", "provider"), list(PAIRS), ids=[f"{c}-{p}" for c, p in PAIRS])
def test_each_consumer_writes_its_message_pact_with_each_publisher(service: str, provider: str) -> None:
    PACTS.mkdir(parents=True, exist_ok=True)
    with consumer_pact(service, provider, PACTS) as pact:
        for event_type in PAIRS[service, provider]:
            pact.upon_receiving(event_description(event_type), "Async").with_body(expected_message(event_type), "application/json")
        pact.verify(consumer(service), "Async")
    written = json.loads((PACTS / f"{service}-{provider}.json").read_text())
    assert [i["description"] for i in written["interactions"]] == [event_description(t) for t in PAIRS[service, provider]]
    assert {i["type"] for i in written["interactions"]} == {"Asynchronous/Messages"}


def test_every_subscription_has_a_pact() -> None:
    subscribed = {(h.service, h.on) for h in HANDLERS}
    covered = {(service, event_type) for (service, _), types in PAIRS.items() for event_type in types}
    assert covered == subscribed


@pytest.mark.parametrize("provider", PROVIDERS)
def test_each_publisher_publishes_what_its_consumers_expect(provider: str) -> None:
    result = verify_provider(provider, None, PACTS, messages=message_producer(provider))
    assert result.failures == ()
    expected = sorted(event_description(t) for (_, p), types in PAIRS.items() if p == provider for t in types)
    assert sorted(i.description for i in result.interactions) == expected


def versions() -> Any:
    """fixtures/contracts/choreography_versions.py: the reference publishers and a changed payment."""
    spec = importlib.util.spec_from_file_location("choreography_versions", VERSIONS)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_publisher_that_renames_a_field_its_consumers_read_is_caught() -> None:
    changed = versions().payment_2_0_0("payment")
    # The change does break its consumers: shipping dead-letters the new message.
    with pytest.raises(AssertionError, match=r"dead-lettered it: \['data lacks amount'\]"):
        consumer("shipping")(changed(event_description("payment.captured")), {})
    with pytest.raises(ProviderVerificationError) as caught:
        verify_provider("payment", None, PACTS, messages=changed)
    report = str(caught.value)
    assert "a payment.captured event" in report
    assert "amount" in report
    assert "a payment.declined event" not in report  # what did not change still passes


class ReservesByQuantity(PaymentService):
    """A payment service that reads ``data.quantity`` of stock.reserved: a field nobody publishes."""

    def _charge(self, message: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        data = message["data"]
        return super()._charge({**message, "data": {"reservation_id": data["reservation_id"], "qty": data["quantity"]}})


def test_a_consumer_that_reads_what_the_pact_does_not_promise_fails_its_own_pact(tmp_path: Path) -> None:
    from pact.error import PactVerificationError

    def write_pact() -> None:
        with consumer_pact("payment", "inventory", tmp_path) as pact:
            pact.upon_receiving(event_description("stock.reserved"), "Async").with_body(expected_message("stock.reserved"), "application/json")
            pact.verify(consumer("payment", {**CLASSES, "payment": ReservesByQuantity}), "Async")

    with pytest.raises(PactVerificationError) as caught:
        write_pact()
    assert [str(e) for e in caught.value.errors] == ["Error verifying interaction 'a stock.reserved event': 'quantity'"]
    assert not (tmp_path / "payment-inventory.json").exists()


def test_message_pacts_without_an_http_api_refuse_http_interactions() -> None:
    from saga_verify.contracts import PactFileError

    order_pacts = PACTS.parent
    with pytest.raises(PactFileError, match=r"no app or URL .* HTTP interactions"):
        verify_provider("payment", None, order_pacts / "order-payment.json", messages=message_producer("payment"))


def test_the_choreography_through_the_gate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every consumer publishes its pacts, every publisher verifies them with its real messages
    (no HTTP API), and can-i-deploy says yes; a payment that renames the captured amount is
    refused, naming the consumers it breaks."""
    from saga_verify._cli import main

    store = str(tmp_path / "contracts.db")

    def contracts(*argv: str) -> tuple[int, str]:
        code = main(["contracts", *argv, "--store", store])
        return code, capsys.readouterr().out

    def verify(provider: str, version: str, producers: str) -> tuple[int, str]:
        return contracts("verify", "--provider", provider, "--provider-version", version, "--branch", "main",
                         "--no-http", "--messages", f"{VERSIONS}:{producers}")  # fmt: skip

    consumers = sorted({c for c, _ in PAIRS})
    for name in consumers:
        assert contracts("publish", str(PACTS), "--pacticipant", name, "--version", "1.0.0", "--branch", "main")[0] == 0
    for provider in PROVIDERS:
        code, out = verify(provider, "1.0.0", "reference")
        assert code == 0, out
    assert contracts("create-environment", "--name", "production", "--production")[0] == 0
    for name in sorted({*consumers, *PROVIDERS}):
        assert contracts("record-deployment", "--pacticipant", name, "--version", "1.0.0", "--environment", "production")[0] == 0

    code, out = verify("payment", "2.0.0", "payment_2_0_0")
    assert code == 1, out
    assert "FAILED  shipping: 'a payment.captured event'" in out
    assert "FAILED  order: 'a payment.captured event'" in out
    code, out = contracts("can-i-deploy", "--pacticipant", "payment", "--version", "2.0.0", "--to-environment", "production")
    assert code == 1, out
    assert "BLOCKS  shipping 1.0.0 -> payment 2.0.0" in out
    assert "BLOCKS  order 1.0.0 -> payment 2.0.0" in out
    assert "ok      inventory 1.0.0 -> payment 2.0.0: verified" in out  # inventory reads payment.declined only


def test_verify_without_http_needs_messages(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from saga_verify._cli import main

    code = main(["contracts", "verify", "--provider", "payment", "--provider-version", "1", "--no-http", "--store", str(tmp_path / "s.db")])
    assert code == 2
    assert "--no-http needs --messages" in capsys.readouterr().err
