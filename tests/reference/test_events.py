"""The events the reference services publish: one per effect, none for a replay, each valid
against its checked-in JSON Schema (contracts/events/), kept in an outbox that survives a restart
and is saved with the state or not at all, and read page by page with ``GET /events``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from saga_verify._world._asgi import SyncASGITransport
from saga_verify.reference.services import create_app
from saga_verify.reference.services._events import EVENT_DATA, EVENT_TYPES, event_schema_text

EVENTS = Path(__file__).resolve().parents[2] / "contracts" / "events"
KEY = "Idempotency-Key"


def client_of(app: Any, service: str = "payment") -> httpx.Client:
    return httpx.Client(transport=SyncASGITransport(app), base_url=f"http://{service}")


@pytest.fixture
def payment():
    with client_of(create_app("payment", inspect=True)) as client:
        yield client


def events(client: httpx.Client, after: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
    response = client.get("/events", params={"after": after, "limit": limit})
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["events"]
    return found


def validator(event_type: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((EVENTS / f"{event_type}.schema.json").read_text())
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


@pytest.mark.parametrize("event_type", sorted(EVENT_DATA))
def test_each_checked_in_event_schema_is_what_the_code_publishes(event_type: str) -> None:
    path = EVENTS / f"{event_type}.schema.json"
    assert path.read_text() == event_schema_text(event_type), (
        f"{path} differs from the event model; review the change, then regenerate with "
        "saga_verify.reference.services._events.write_event_schemas('contracts/events')"
    )
    jsonschema.Draft202012Validator.check_schema(json.loads(path.read_text()))


def test_there_is_a_schema_for_every_event_type_and_no_other() -> None:
    assert sorted(p.name for p in EVENTS.glob("*.schema.json")) == sorted(f"{t}.schema.json" for t in EVENT_DATA)
    assert set(EVENT_TYPES.values()) == set(EVENT_DATA)


def test_an_effect_publishes_one_event_and_a_replay_none(payment: httpx.Client) -> None:
    assert payment.post("/charges", json={"order_id": "o-1", "amount": 100}, headers={KEY: "o-1:charge"}).status_code == 201
    replay = payment.post("/charges", json={"order_id": "o-1", "amount": 100}, headers={KEY: "o-1:charge"})
    assert replay.headers["Idempotency-Replayed"] == "true"
    assert payment.post("/refunds", json={"charge_key": "o-1:charge"}, headers={KEY: "o-1:refund"}).status_code == 200
    assert payment.post("/refunds", json={"charge_key": "o-1:charge"}, headers={KEY: "o-1:refund"}).status_code == 200
    published = events(payment)
    assert [(e["type"], e["id"], e["correlation_id"], e["idempotency_key"], e["data"]) for e in published] == [
        ("payment.charged", "payment-1", "o-1", "o-1:charge", {"charge_id": "ch-1", "amount": 100}),
        # A refund names its charge only by key: it belongs to the order of the charge it undoes.
        ("payment.refunded", "payment-2", "o-1", "o-1:refund", {"charge_id": "ch-1", "amount": 100}),
    ]
    for event in published:
        validator(event["type"]).validate(event)


def test_a_refusal_or_a_rejection_publishes_nothing(payment: httpx.Client) -> None:
    assert payment.post("/_inspect/refuse-next").status_code == 204
    assert payment.post("/charges", json={"order_id": "o-1", "amount": 100}, headers={KEY: "k"}).status_code == 402
    assert payment.post("/charges", json={"order_id": "o-1", "amount": 200}, headers={KEY: "k"}).status_code == 422
    assert payment.post("/charges", json={"order_id": "o-1", "amount": "x"}).status_code == 422
    assert events(payment) == []


def test_every_participant_event_is_valid_against_its_schema() -> None:
    steps = {
        "inventory": [("/reservations", {"order_id": "o", "sku": "sku-1", "qty": 2}, "r"), ("/releases", {"reserve_key": "r"}, "rr")],
        "shipping": [("/shipments", {"order_id": "o", "reservation_id": "res-1"}, "s"), ("/cancellations", {"shipment_key": "s"}, "c")],
        "notification": [("/notifications", {"order_id": "o", "message": "hi"}, "n")],
    }
    seen = set()
    for service, requests in steps.items():
        with client_of(create_app(service), service) as client:
            for path, body, key in requests:
                assert client.post(path, json=body, headers={KEY: key}).status_code < 300
            for event in events(client):
                validator(event["type"]).validate(event)
                assert (event["source"], event["correlation_id"]) == (service, "o")
                seen.add(event["type"])
    assert seen == {"stock.reserved", "stock.released", "shipment.created", "shipment.cancelled", "notification.sent"}


def test_the_outbox_is_read_in_pages(payment: httpx.Client) -> None:
    for n in range(5):
        payment.post("/charges", json={"order_id": f"o-{n}", "amount": 100}, headers={KEY: f"k{n}"})
    first = payment.get("/events", params={"limit": 2}).json()
    assert [e["id"] for e in first["events"]] == ["payment-1", "payment-2"]
    assert first["next"] == 2
    rest = payment.get("/events", params={"after": first["next"]}).json()
    assert [e["id"] for e in rest["events"]] == ["payment-3", "payment-4", "payment-5"]
    assert rest["next"] == 5
    assert payment.get("/events", params={"after": 5}).json() == {"events": [], "next": 5}
    assert payment.get("/events", params={"after": 50}).json() == {"events": [], "next": 50}


@pytest.mark.parametrize("query", ["after=-1", "after=x", "limit=0", "limit=1001", "limit=2.5"])
def test_a_bad_position_or_limit_is_rejected_with_a_reason(payment: httpx.Client, query: str) -> None:
    response = payment.get(f"/events?{query}")
    assert response.status_code == 422
    assert response.json()["status"] == "rejected"
    assert query.split("=")[0] in response.json()["reason"]


def test_the_outbox_survives_a_restart_and_ids_go_on(tmp_path: Path) -> None:
    store = tmp_path / "payment.sqlite"
    with client_of(create_app("payment", store_path=store)) as first:
        first.post("/charges", json={"order_id": "o-1", "amount": 100}, headers={KEY: "o-1:charge"})
        before = events(first)
    with client_of(create_app("payment", store_path=store)) as second:
        assert events(second) == before
        second.post("/refunds", json={"charge_key": "o-1:charge"}, headers={KEY: "o-1:refund"})
        after = events(second)
    assert [e["id"] for e in after] == ["payment-1", "payment-2"]
    # The order of a refund after a restart still comes from the charge it undoes.
    assert after[1]["correlation_id"] == "o-1"


def test_events_that_cannot_be_saved_are_not_published(tmp_path: Path) -> None:
    from test_http_services import break_store

    with client_of(create_app("payment", store_path=tmp_path / "payment.sqlite")) as client:
        break_store(tmp_path / "payment.sqlite")
        assert client.post("/charges", json={"order_id": "o-1", "amount": 100}, headers={KEY: "k"}).status_code == 503
        assert events(client) == []
    # Nor are they in the store: a service started on it publishes nothing either.
    import sqlite3
    from contextlib import closing

    with closing(sqlite3.connect(tmp_path / "payment.sqlite")) as db:
        assert db.execute("SELECT COUNT(*) FROM outbox").fetchone() == (0,)


def test_a_reset_participant_starts_a_new_outbox(payment: httpx.Client) -> None:
    payment.post("/charges", json={"order_id": "o-1", "amount": 100}, headers={KEY: "k"})
    assert payment.post("/_inspect/reset").status_code == 200
    assert events(payment) == []
