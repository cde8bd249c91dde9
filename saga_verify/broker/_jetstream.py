"""Handlers run as consumers of a real NATS JetStream stream: envelopes published as JSON, pulled
with explicit acknowledgement, redelivered after a nack or when the acknowledgement wait runs out,
dead-lettered (with the reason) after a bounded number of deliveries. Faults are injected at
publish and at consume, chosen by a plan from what happens, never from when: the broker's own
timing is real and not repeatable, so a run is judged by the services' state once it has settled.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ._errors import BrokerError, BrokerUnavailableError

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.js.client import JetStreamContext

#: A message as the handlers see it: the decoded JSON envelope.
Envelope = dict[str, Any]

#: Real seconds the run may take to settle (nothing pending, nothing unacknowledged, nothing held).
SETTLE_WITHIN = 120.0

FaultKind = Literal["duplicate", "redeliver", "delay"]


@dataclass(frozen=True)
class BrokerFault:
    """What happens to one message at the broker, chosen by a plan.

    At ``publish``: ``duplicate`` publishes it twice, ``delay`` holds it ``seconds`` before
    publishing. At ``consume``: ``duplicate`` handles it and then nacks it instead of acking (the
    acknowledgement is lost: the broker delivers it again at once), ``redeliver`` handles it and
    then the consumer crashes before acknowledging (the broker delivers it again when its ack
    wait runs out), ``delay`` nacks it with a delay before handling it."""

    kind: FaultKind
    side: Literal["publish", "consume"]
    seconds: float = 0.0
    """For ``delay``: real seconds the message is held."""


class Rejected(Exception):  # noqa: N818  # a verdict about a message, not a failure of the code
    """Raised by a handler for a message it will never accept (malformed envelope, unknown type or
    version, a payload that fails its schema): it goes to the dead-letter stream at once, with
    this exception's message as the reason, and is never retried."""


@dataclass(frozen=True)
class Consumer:
    """One durable consumer: the event types it subscribes to and its handler. The handler gets
    the envelope and returns the envelopes it publishes in turn; raising `Rejected` dead-letters
    the message, raising anything else nacks it for another try."""

    name: str
    event_types: tuple[str, ...]
    handle: Callable[[Envelope], Iterable[Envelope]]


class FaultChooser:
    """Which fault, if any, happens to a message. Asked once per occurrence, counted per publisher
    and event type (publish) or per consumer and event type on first delivery (consume), so the
    choice depends only on what the choreography did, never on the broker's timing."""

    def at_publish(self, source: str, envelope: Envelope, occurrence: int) -> BrokerFault | None:
        return None

    def at_consume(self, consumer: str, envelope: Envelope, occurrence: int) -> BrokerFault | None:
        return None


@dataclass(frozen=True)
class BrokerEntry:
    """One thing the broker run saw, in the order it saw it."""

    seconds: float
    """Real seconds since the run began."""
    kind: str
    """``published``, ``published-copy``, ``held``, ``delivered``, ``redelivered``, ``acked``,
    ``nacked``, ``crashed-before-ack``, ``failed``, ``dead-lettered``."""
    event_type: str
    event_id: str
    where: str
    """The publisher or the consumer."""
    delivery: int = 0
    """The consumer's delivery count of this message (1: first delivery)."""
    note: str = ""

    def __str__(self) -> str:
        count = f" (delivery {self.delivery})" if self.delivery else ""
        note = f": {self.note}" if self.note else ""
        return f"{self.seconds:8.3f}s {self.kind:<18} {self.event_type} {self.event_id} @{self.where}{count}{note}"


@dataclass(frozen=True)
class DeadLetter:
    """A message in the dead-letter stream, read back from the broker."""

    consumer: str
    reason: str
    deliveries: int
    envelope: Envelope | None
    """None when the message was not a JSON object (its raw text is in ``raw``)."""
    raw: str


@dataclass(frozen=True)
class BrokerRun:
    """What one run over the broker did, once it settled."""

    stream: str
    published: tuple[Envelope, ...]
    """Every envelope published to the stream, copies included, in publishing order."""
    handled: tuple[tuple[str, Envelope], ...]
    """(consumer, envelope) for every delivery a handler ran to the end."""
    dead_letters: tuple[DeadLetter, ...]
    timeline: tuple[BrokerEntry, ...]
    settle_seconds: float

    def timeline_text(self) -> str:
        return "\n".join(str(entry) for entry in self.timeline)


@dataclass
class _RunState:
    started: float
    timeline: list[BrokerEntry] = field(default_factory=list)
    published: list[Envelope] = field(default_factory=list)
    handled: list[tuple[str, Envelope]] = field(default_factory=list)
    publish_counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    consume_counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    held: set[asyncio.Task[None]] = field(default_factory=set)
    busy: int = 0
    advisories: int = 0
    dead_lettered: int = 0
    failure: BaseException | None = None

    def log(self, kind: str, envelope: Envelope | None, where: str, delivery: int = 0, note: str = "") -> None:
        event_type, event_id = _identity(envelope)
        self.timeline.append(BrokerEntry(round(time.monotonic() - self.started, 6), kind, event_type, event_id, where, delivery, note))


def _identity(envelope: Envelope | None) -> tuple[str, str]:
    if not isinstance(envelope, dict):
        return "?", "?"
    return str(envelope.get("type", "?")), str(envelope.get("id", "?"))


_RUNS = itertools.count(1)


class JetStreamBus:
    """Runs consumers over one NATS JetStream server. Each `run` makes its own stream and
    dead-letter stream (names unique to the run), and deletes both when it is done."""

    def __init__(
        self,
        url: str,
        *,
        stream: str = "SAGA",
        ack_wait: float = 1.0,
        max_deliver: int = 4,
        retry_delay: float = 0.05,
        settle_within: float = SETTLE_WITHIN,
        connect_within: float = 10.0,
    ) -> None:
        if not isinstance(max_deliver, int) or max_deliver < 2:
            raise BrokerError(f"max_deliver must be an int >= 2 (a redelivery needs a second delivery), got {max_deliver!r}")
        if not (ack_wait > 0 and settle_within > 0 and retry_delay >= 0 and connect_within > 0):
            raise BrokerError(
                f"ack_wait, settle_within and connect_within must be > 0 and retry_delay >= 0, got "
                f"ack_wait={ack_wait!r}, settle_within={settle_within!r}, retry_delay={retry_delay!r}, connect_within={connect_within!r}"
            )
        if not stream or not all(c.isalnum() or c in "_-" for c in stream):
            raise BrokerError(f"stream name {stream!r}: use letters, digits, '_' and '-' only (JetStream refuses the rest)")
        self.url = url
        self.stream = stream
        self.ack_wait = ack_wait
        self.max_deliver = max_deliver
        self.retry_delay = retry_delay
        self.settle_within = settle_within
        self.connect_within = connect_within

    # -- the synchronous face ------------------------------------------------------------------
    def run(
        self,
        consumers: Sequence[Consumer],
        start: Sequence[tuple[str, Envelope]],
        chooser: FaultChooser | None = None,
    ) -> BrokerRun:
        """Publish ``start`` ((publisher, envelope) pairs), let the consumers handle everything
        that follows until the run settles, and return what happened. Handlers run one at a time,
        on this thread's event loop."""
        return asyncio.run(self.run_async(consumers, start, chooser))

    async def run_async(
        self,
        consumers: Sequence[Consumer],
        start: Sequence[tuple[str, Envelope]],
        chooser: FaultChooser | None = None,
    ) -> BrokerRun:
        names = [c.name for c in consumers]
        if len(set(names)) != len(names) or not all(n and all(ch.isalnum() or ch in "_-" for ch in n) for n in names):
            raise BrokerError(f"consumer names must be distinct and use letters, digits, '_' and '-' only, got {names}")
        nats = _nats()
        run_id = f"{next(_RUNS)}_{uuid.uuid4().hex[:8]}"
        stream, dlq = f"{self.stream}_{run_id}", f"{self.stream}_{run_id}_DLQ"
        prefix = f"sv.{run_id}"
        client = await self._connect(nats)
        state = _RunState(time.monotonic())
        try:
            js = client.jetstream()
            await self._create_stream(js, stream, [f"{prefix}.ev.>"])
            try:
                await self._create_stream(js, dlq, [f"{prefix}.dlq.>"])
                try:
                    return await self._run(client, js, stream, dlq, prefix, consumers, start, chooser or FaultChooser(), state)
                finally:
                    await _quietly(js.delete_stream(dlq))
            finally:
                await _quietly(js.delete_stream(stream))
        finally:
            await _quietly(client.close())

    # -- set-up --------------------------------------------------------------------------------
    async def _connect(self, nats: Any) -> Client:
        errors: list[BaseException] = []

        async def remember(exc: BaseException) -> None:
            errors.append(exc)  # reported in the BrokerError below, not logged as it happens

        try:
            # One attempt and one retry (nats-py reads 0 as "retry for ever"), within the deadline.
            client: Client = await asyncio.wait_for(
                nats.connect(
                    self.url, connect_timeout=self.connect_within, allow_reconnect=False,
                    max_reconnect_attempts=1, reconnect_time_wait=0.1, error_cb=remember,
                ),
                self.connect_within * 2,
            )  # fmt: skip
        except Exception as exc:
            cause = errors[-1] if errors else exc
            raise BrokerError(f"cannot reach the NATS server at {self.url}: {type(cause).__name__}: {cause or 'no answer'}") from exc
        return client

    async def _create_stream(self, js: JetStreamContext, name: str, subjects: list[str]) -> None:
        try:
            await js.add_stream(name=name, subjects=subjects)
        except Exception as exc:
            raise BrokerError(
                f"cannot create JetStream stream {name!r} (subjects {subjects}) on {self.url}: {type(exc).__name__}: {exc} "
                "(is JetStream enabled on that server: nats-server -js?)"
            ) from exc

    # -- the run -------------------------------------------------------------------------------
    async def _run(
        self,
        client: Client,
        js: JetStreamContext,
        stream: str,
        dlq: str,
        prefix: str,
        consumers: Sequence[Consumer],
        start: Sequence[tuple[str, Envelope]],
        chooser: FaultChooser,
        state: _RunState,
    ) -> BrokerRun:
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        async def publish(source: str, envelope: Envelope) -> None:
            state.publish_counts[(source, _identity(envelope)[0])] += 1
            fault = chooser.at_publish(source, envelope, state.publish_counts[(source, _identity(envelope)[0])])
            if fault is not None and fault.kind == "delay":
                state.log("held", envelope, source, note=f"held {fault.seconds:g}s before publishing")
                task = asyncio.get_running_loop().create_task(held(source, envelope, fault.seconds))
                state.held.add(task)
                task.add_done_callback(state.held.discard)
                return
            await put(source, envelope, "published")
            if fault is not None and fault.kind == "duplicate":
                await put(source, envelope, "published-copy")

        async def held(source: str, envelope: Envelope, seconds: float) -> None:
            await asyncio.sleep(seconds)
            try:
                await put(source, envelope, "published")
            except BaseException as exc:  # the run's waiter reports it
                state.failure = state.failure or exc

        async def put(source: str, envelope: Envelope, kind: str) -> None:
            event_type = _identity(envelope)[0]
            subject = f"{prefix}.ev.{_token(event_type)}"
            try:
                await js.publish(subject, json.dumps(envelope, sort_keys=True).encode(), stream=stream)
            except Exception as exc:
                raise BrokerError(f"cannot publish {event_type} to stream {stream!r} on {self.url}: {type(exc).__name__}: {exc}") from exc
            state.published.append(envelope)
            state.log(kind, envelope, source)

        async def dead_letter(consumer: str, raw: bytes, envelope: Envelope | None, reason: str, deliveries: int) -> None:
            body = {"consumer": consumer, "reason": reason, "deliveries": deliveries, "message": raw.decode(errors="replace")}
            try:
                await js.publish(f"{prefix}.dlq.{consumer}", json.dumps(body).encode(), stream=dlq)
            except Exception as exc:
                raise BrokerError(f"cannot dead-letter to stream {dlq!r} on {self.url}: {type(exc).__name__}: {exc}") from exc
            state.dead_lettered += 1
            state.log("dead-lettered", envelope, consumer, deliveries, reason)

        async def handle(consumer: Consumer, msg: Msg) -> None:
            deliveries = msg.metadata.num_delivered or 1
            try:
                envelope = json.loads(msg.data)
                if not isinstance(envelope, dict):
                    raise ValueError(f"a JSON {type(envelope).__name__}, not an object")
            except ValueError as exc:
                await dead_letter(consumer.name, msg.data, None, f"malformed envelope: {exc}", deliveries)
                await msg.term()
                return
            state.log("delivered" if deliveries == 1 else "redelivered", envelope, consumer.name, deliveries)
            fault = None
            if deliveries == 1:
                key = (consumer.name, _identity(envelope)[0])
                state.consume_counts[key] += 1
                fault = chooser.at_consume(consumer.name, envelope, state.consume_counts[key])
            if fault is not None and fault.kind == "delay":
                state.log("nacked", envelope, consumer.name, deliveries, f"delayed {fault.seconds:g}s")
                await msg.nak(delay=fault.seconds)
                return
            try:
                published = list(consumer.handle(envelope))
            except Rejected as exc:
                await dead_letter(consumer.name, msg.data, envelope, f"rejected: {exc}", deliveries)
                await msg.term()
                return
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
                if deliveries >= self.max_deliver:
                    await dead_letter(consumer.name, msg.data, envelope, f"failed {deliveries} times, last: {reason}", deliveries)
                    await msg.term()
                else:
                    state.log("failed", envelope, consumer.name, deliveries, reason)
                    await msg.nak(delay=self.retry_delay)
                return
            state.handled.append((consumer.name, envelope))
            for out in published:
                await publish(consumer.name, out)
            if fault is not None and fault.kind == "redeliver":
                state.log("crashed-before-ack", envelope, consumer.name, deliveries)
                return  # no acknowledgement: the broker delivers it again after its ack wait
            if fault is not None and fault.kind == "duplicate":
                state.log("nacked", envelope, consumer.name, deliveries, "acknowledgement lost")
                await msg.nak()
                return
            await msg.ack()
            state.log("acked", envelope, consumer.name, deliveries)

        async def on_max_deliveries(advisory_msg: Msg) -> None:
            # The broker gave up on a message whose consumer never acknowledged it: read it back
            # from the stream and dead-letter it with the broker's own count.
            state.busy += 1
            try:
                advisory = json.loads(advisory_msg.data)
                stored = await js.get_msg(stream, int(advisory["stream_seq"]))
                raw = stored.data or b""
                try:
                    envelope = json.loads(raw)
                except ValueError:
                    envelope = None
                deliveries = int(advisory.get("deliveries", self.max_deliver))
                name = str(advisory.get("consumer", "?"))
                await dead_letter(name, raw, envelope, f"never acknowledged in {deliveries} deliveries", deliveries)
            except BaseException as exc:
                state.failure = state.failure or exc
            finally:
                state.advisories += 1
                state.busy -= 1

        advisories = await client.subscribe(f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream}.*", cb=on_max_deliveries)
        subscriptions = []
        for consumer in consumers:
            config = ConsumerConfig(
                durable_name=consumer.name,
                filter_subjects=[f"{prefix}.ev.{_token(t)}" for t in consumer.event_types],
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=self.ack_wait,
                max_deliver=self.max_deliver,
            )
            try:
                await js.add_consumer(stream, config)
                subscriptions.append((consumer, await js.pull_subscribe_bind(consumer.name, stream)))
            except Exception as exc:
                raise BrokerError(f"cannot create consumer {consumer.name!r} on stream {stream!r} at {self.url}: {type(exc).__name__}: {exc}") from exc

        async def consume(consumer: Consumer, subscription: Any) -> None:
            while True:
                try:
                    messages = await subscription.fetch(16, timeout=0.2)
                except (nats_timeout, TimeoutError):
                    continue  # nothing to deliver yet: ask again
                for msg in messages:
                    state.busy += 1
                    try:
                        await handle(consumer, msg)
                    finally:
                        state.busy -= 1

        nats_timeout = _nats().errors.TimeoutError
        for source, envelope in start:
            await publish(source, envelope)
        workers = [asyncio.get_running_loop().create_task(consume(c, s)) for c, s in subscriptions]
        try:
            await self._settle(client, js, stream, [c.name for c in consumers], state, workers)
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            for task in list(state.held):
                task.cancel()
            await _quietly(advisories.unsubscribe())
        dead_letters = await self._read_dead_letters(js, dlq)
        return BrokerRun(
            stream,
            tuple(state.published),
            tuple(state.handled),
            dead_letters,
            tuple(state.timeline),
            round(time.monotonic() - state.started, 3),
        )

    async def _settle(
        self, client: Client, js: JetStreamContext, stream: str, names: list[str], state: _RunState, workers: list[asyncio.Task[None]]
    ) -> None:
        """Wait until nothing is pending, unacknowledged, held or being handled, twice in a row a
        poll apart (a redelivery or an advisory may be on its way); poll, never a fixed sleep."""
        deadline = time.monotonic() + self.settle_within
        quiet_polls = 0
        while True:
            if state.failure is not None:
                raise state.failure
            for worker in workers:
                if worker.done() and not worker.cancelled() and worker.exception() is not None:
                    raise worker.exception()  # type: ignore[misc]
            outstanding = 0 if not (state.held or state.busy) else 1
            if not outstanding:
                for name in names:
                    info = await js.consumer_info(stream, name)
                    outstanding += (info.num_pending or 0) + (info.num_ack_pending or 0)
                await client.flush()  # advisories the server has sent are read before judging
            quiet_polls = quiet_polls + 1 if outstanding == 0 and not state.busy else 0
            if quiet_polls >= 2:
                return
            if time.monotonic() >= deadline:
                raise BrokerError(
                    f"the run on stream {stream!r} at {self.url} did not settle within {self.settle_within:g} s "
                    f"({outstanding} message(s) still pending or unacknowledged)"
                )
            await asyncio.sleep(0.05)

    async def _read_dead_letters(self, js: JetStreamContext, dlq: str) -> tuple[DeadLetter, ...]:
        info = await js.stream_info(dlq)
        letters = []
        for seq in range(info.state.first_seq or 1, (info.state.last_seq or 0) + 1):
            stored = await js.get_msg(dlq, seq)
            body = json.loads(stored.data or b"{}")
            raw = str(body.get("message", ""))
            try:
                envelope = json.loads(raw)
            except ValueError:
                envelope = None
            letters.append(
                DeadLetter(
                    str(body.get("consumer")), str(body.get("reason")), int(body.get("deliveries", 0)),
                    envelope if isinstance(envelope, dict) else None, raw,
                )
            )  # fmt: skip
        return tuple(letters)


def _token(event_type: str) -> str:
    """An event type as subject tokens: dots keep their meaning (``stock.reserved`` ->
    ``stock.reserved``); characters a subject cannot hold become ``_``."""
    cleaned = "".join(c if c.isalnum() or c in "._-" else "_" for c in event_type).strip(".")
    return ".".join(part or "_" for part in cleaned.split(".")) or "_"


async def _quietly(awaitable: Any) -> None:
    try:
        await awaitable
    except Exception:
        pass  # tidying up after the run: a broker already gone has nothing left to tidy


def _nats() -> Any:
    """nats-py, imported when a run needs it: importing saga_verify never loads it."""
    try:
        import nats
        import nats.errors
    except ImportError as exc:
        raise BrokerUnavailableError("the NATS client is not installed: pip install 'saga-verify[broker]' (nats-py)") from exc
    return nats


def faults_from(plan: Mapping[tuple[str, str, str, int], BrokerFault]) -> FaultChooser:
    """A chooser from a table: (side, publisher or consumer, event type, occurrence) -> fault."""

    class _Table(FaultChooser):
        def at_publish(self, source: str, envelope: Envelope, occurrence: int) -> BrokerFault | None:
            return plan.get(("publish", source, _identity(envelope)[0], occurrence))

        def at_consume(self, consumer: str, envelope: Envelope, occurrence: int) -> BrokerFault | None:
            return plan.get(("consume", consumer, _identity(envelope)[0], occurrence))

    return _Table()
