"""A small shop as a team would write it with the NATS client alone (nats-py, no saga-verify):
orders publishes ``order.placed``; stock reserves (a push consumer) and publishes
``stock.reserved``; payment charges (a pull consumer) and publishes ``payment.charged``; orders
confirms. Publishers retry a publish whose PubAck does not come; consumers deduplicate by event
id, except the non-idempotent payment, which charges every delivery."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import nats
import nats.errors
from nats.aio.msg import Msg

STREAM = "SHOP"
SUBJECTS = ["order.*", "stock.*", "payment.*"]
#: Real seconds a publisher waits for the broker's PubAck before it publishes again.
PUBLISH_TIMEOUT = 0.5
#: How many times a publisher tries before it gives up (and its callback raises).
PUBLISH_TRIES = 4


async def create_stream(js: Any) -> None:
    await js.add_stream(name=STREAM, subjects=SUBJECTS)


class _Service:
    def __init__(self) -> None:
        self.nc: Any = None
        self.js: Any = None

    async def connect(self, url: str) -> None:
        self.nc = await nats.connect(url, allow_reconnect=False)
        self.js = self.nc.jetstream()

    async def publish(self, subject: str, event: dict[str, Any]) -> None:
        """At least once: a publish whose PubAck is lost is published again (same event id)."""
        body = json.dumps(event).encode()
        for _ in range(PUBLISH_TRIES):
            try:
                await self.js.publish(subject, body, timeout=PUBLISH_TIMEOUT)
                return
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
                continue
        raise RuntimeError(f"could not publish {subject}")

    async def stop(self) -> None:
        if self.nc is not None:
            await self.nc.close()


class Orders(_Service):
    def __init__(self) -> None:
        super().__init__()
        self.status: dict[str, str] = {}

    async def start(self, url: str) -> None:
        await self.connect(url)
        await self.js.subscribe("payment.charged", durable="confirm", cb=self.on_charged, manual_ack=True)

    async def place(self, order_id: str) -> None:
        self.status[order_id] = "placed"
        await self.publish("order.placed", {"id": f"{order_id}:placed", "order": order_id})

    async def on_charged(self, msg: Msg) -> None:
        event = json.loads(msg.data)
        self.status[event["order"]] = "completed"
        await msg.ack()


class Stock(_Service):
    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()
        self.reserved: dict[str, int] = {}

    async def start(self, url: str) -> None:
        await self.connect(url)
        await self.js.subscribe("order.placed", durable="reserve", cb=self.on_placed, manual_ack=True)

    async def on_placed(self, msg: Msg) -> None:
        event = json.loads(msg.data)
        if event["id"] not in self.seen:
            self.seen.add(event["id"])
            self.reserved[event["order"]] = self.reserved.get(event["order"], 0) + 1
        await self.publish("stock.reserved", {"id": f"{event['order']}:reserved", "order": event["order"]})
        await msg.ack()


class Payment(_Service):
    """A pull consumer; ``idempotent=False`` charges every delivery it gets."""

    def __init__(self, idempotent: bool = True) -> None:
        super().__init__()
        self.idempotent = idempotent
        self.seen: set[str] = set()
        self.charges: dict[str, int] = {}
        self.task: asyncio.Task[None] | None = None

    async def start(self, url: str) -> None:
        await self.connect(url)
        self.subscription = await self.js.pull_subscribe("stock.reserved", durable="charge")
        self.task = asyncio.get_running_loop().create_task(self.consume())

    async def consume(self) -> None:
        while True:
            try:
                messages = await self.subscription.fetch(1, timeout=0.2)
            except nats.errors.TimeoutError:
                continue
            for msg in messages:
                await self.on_reserved(msg)

    async def on_reserved(self, msg: Msg) -> None:
        event = json.loads(msg.data)
        if not self.idempotent or event["id"] not in self.seen:
            self.seen.add(event["id"])
            self.charges[event["order"]] = self.charges.get(event["order"], 0) + 1
        await self.publish("payment.charged", {"id": f"{event['order']}:charged", "order": event["order"]})
        await msg.ack()

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await super().stop()
