"""The JetStream adapter against a real NATS server: delivery, acknowledgement, redelivery,
dead letters, the faults a plan injects at publish and consume, and the errors that name a broker
that cannot be used."""

from __future__ import annotations

import asyncio
import json
import socket
from collections import Counter
from typing import Any

import pytest

from saga_verify.broker import (
    BrokerError,
    BrokerFault,
    Consumer,
    JetStreamBus,
    NatsServer,
    Rejected,
    faults_from,
)


def _event(event_type: str, event_id: str, **data: Any) -> dict[str, Any]:
    return {"type": event_type, "version": 1, "id": event_id, "correlation_id": "order-1", "data": data}


class Shop:
    """Two services reacting to each other: inventory reserves on order.placed, the order service
    confirms on stock.reserved. ``idempotent`` says whether inventory dedupes by event id."""

    def __init__(self, *, idempotent: bool = True) -> None:
        self.idempotent = idempotent
        self.seen: set[str] = set()
        self.reserved = Counter[str]()
        self.confirmed: list[str] = []

    def inventory(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        if self.idempotent and event["id"] in self.seen:
            return []
        self.seen.add(event["id"])
        self.reserved[event["correlation_id"]] += 1
        return [_event("stock.reserved", f"res-{len(self.seen)}-{self.reserved.total()}")]

    def order(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        self.confirmed.append(event["correlation_id"])
        return []

    def consumers(self) -> list[Consumer]:
        return [Consumer("inventory", ("order.placed",), self.inventory), Consumer("order", ("stock.reserved",), self.order)]


START = [("order", _event("order.placed", "placed-1"))]


def _bus(server: NatsServer, **options: Any) -> JetStreamBus:
    return JetStreamBus(server.url, ack_wait=options.pop("ack_wait", 0.5), **options)


def test_a_clean_run_delivers_each_event_once_and_acknowledges_it(nats_server: NatsServer) -> None:
    shop = Shop()
    run = _bus(nats_server).run(shop.consumers(), START)
    assert shop.reserved == {"order-1": 1}
    assert shop.confirmed == ["order-1"]
    assert [e["type"] for e in run.published] == ["order.placed", "stock.reserved"]
    assert [k for k in (e.kind for e in run.timeline) if k in ("delivered", "redelivered", "acked")] == ["delivered", "acked"] * 2
    assert run.dead_letters == ()


def test_a_duplicate_publish_reaches_the_consumer_twice(nats_server: NatsServer) -> None:
    faults = faults_from({("publish", "order", "order.placed", 1): BrokerFault("duplicate", "publish")})
    idempotent, careless = Shop(), Shop(idempotent=False)
    _bus(nats_server).run(idempotent.consumers(), START, faults)
    run = _bus(nats_server).run(careless.consumers(), START, faults)
    assert [e.kind for e in run.timeline if e.event_type == "order.placed"][:2] == ["published", "published-copy"]
    assert idempotent.reserved == {"order-1": 1}
    assert careless.reserved == {"order-1": 2}  # the copy really came through the broker


def test_a_consumer_that_crashes_before_acknowledging_gets_the_message_again(nats_server: NatsServer) -> None:
    faults = faults_from({("consume", "inventory", "order.placed", 1): BrokerFault("redeliver", "consume")})
    careless = Shop(idempotent=False)
    run = _bus(nats_server).run(careless.consumers(), START, faults)
    inventory = [(e.kind, e.delivery) for e in run.timeline if e.where == "inventory" and not e.kind.startswith("published")]
    assert inventory[:3] == [("delivered", 1), ("crashed-before-ack", 1), ("redelivered", 2)]
    assert careless.reserved == {"order-1": 2}
    assert run.dead_letters == ()


@pytest.mark.parametrize("fault", [BrokerFault("duplicate", "consume"), BrokerFault("delay", "consume", 0.2)])
def test_a_nack_on_consume_redelivers(nats_server: NatsServer, fault: BrokerFault) -> None:
    careless = Shop(idempotent=False)
    run = _bus(nats_server).run(careless.consumers(), START, faults_from({("consume", "inventory", "order.placed", 1): fault}))
    assert ("redelivered", 2) in [(e.kind, e.delivery) for e in run.timeline if e.where == "inventory"]
    # A lost acknowledgement runs the handler twice; a delay before handling, once.
    assert careless.reserved == {"order-1": 2 if fault.kind == "duplicate" else 1}


def test_a_publish_held_back_is_published_later(nats_server: NatsServer) -> None:
    faults = faults_from({("publish", "inventory", "stock.reserved", 1): BrokerFault("delay", "publish", 0.2)})
    shop = Shop()
    run = _bus(nats_server).run(shop.consumers(), START, faults)
    kinds = [e.kind for e in run.timeline if e.event_type == "stock.reserved"]
    assert kinds[:2] == ["held", "published"]
    assert shop.confirmed == ["order-1"]


def test_a_message_that_always_fails_is_dead_lettered_after_max_deliver(nats_server: NatsServer) -> None:
    def always_fails(event: dict[str, Any]) -> list[dict[str, Any]]:
        raise RuntimeError("the database is down")

    run = _bus(nats_server, max_deliver=3).run([Consumer("inventory", ("order.placed",), always_fails)], START)
    assert [(d.consumer, d.deliveries, d.envelope and d.envelope["id"]) for d in run.dead_letters] == [("inventory", 3, "placed-1")]
    assert run.dead_letters[0].reason == "failed 3 times, last: RuntimeError: the database is down"
    assert [e.delivery for e in run.timeline if e.kind in ("delivered", "redelivered")] == [1, 2, 3]


def test_a_rejected_or_malformed_message_is_dead_lettered_at_once_with_its_reason(nats_server: NatsServer) -> None:
    def strict(event: dict[str, Any]) -> list[dict[str, Any]]:
        if event.get("version") != 1:
            raise Rejected(f"unknown version {event.get('version')!r} of {event['type']}")
        return []

    start = [("order", {**_event("order.placed", "placed-1"), "version": 7}), ("order", ["not", "an", "envelope"])]
    run = _bus(nats_server).run([Consumer("inventory", ("order.placed", "?"), strict)], start)  # type: ignore[list-item]
    reasons = sorted(d.reason for d in run.dead_letters)
    assert reasons == ["malformed envelope: a JSON list, not an object", "rejected: unknown version 7 of order.placed"]
    assert all(d.deliveries == 1 for d in run.dead_letters)
    assert json.loads(next(d.raw for d in run.dead_letters if d.envelope is None)) == ["not", "an", "envelope"]


def test_an_unreachable_broker_is_an_error_naming_it() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"nats://127.0.0.1:{sock.getsockname()[1]}"  # bound, never listening: nothing answers
        with pytest.raises(BrokerError, match=f"cannot reach the NATS server at {url}"):
            JetStreamBus(url, connect_within=2).run(Shop().consumers(), START)


def test_a_stream_that_cannot_be_created_is_an_error_naming_it(nats_server: NatsServer) -> None:
    import nats

    async def claim_every_subject() -> None:
        client = await nats.connect(nats_server.url)
        try:
            await client.jetstream().add_stream(name="GREEDY", subjects=["sv.>"])
        finally:
            await client.close()

    async def release() -> None:
        client = await nats.connect(nats_server.url)
        try:
            await client.jetstream().delete_stream("GREEDY")
        finally:
            await client.close()

    asyncio.run(claim_every_subject())
    try:
        with pytest.raises(BrokerError, match=r"cannot create JetStream stream 'SAGA_\w+' .* on nats://127\.0\.0\.1:\d+"):
            _bus(nats_server).run(Shop().consumers(), START)
    finally:
        asyncio.run(release())


@pytest.mark.parametrize(
    ("options", "message"),
    [({"max_deliver": 1}, "max_deliver must be an int >= 2"), ({"stream": "a.b"}, "stream name 'a.b'"), ({"ack_wait": 0}, "ack_wait")],
)
def test_bad_options_are_refused_by_name(options: dict[str, Any], message: str) -> None:
    with pytest.raises(BrokerError, match=message):
        JetStreamBus("nats://127.0.0.1:4222", **options)
