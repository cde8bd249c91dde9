"""A choreography's bus on a real NATS JetStream server: each execution gets its own stream and
dead-letter stream, one durable pull consumer per handler with explicit acknowledgement, and the
broker's own redelivery (a nack, or the ack wait running out) and delivery bound.

Faults stay the plan's: each publish and each delivery to a handler is a delivery point of the
world's transport (``inventory.publish#1``, ``payment.charge#2``), so a duplicate publish reaches
the broker twice, and a delivery that a fault lost, crashed or held is never acknowledged and comes
back when the broker's ack wait runs out. The broker's timing is real: which message is ready
when is not repeatable to the microsecond, so a run is judged at quiescence (nothing pending,
nothing unacknowledged), found by polling the broker, never by sleeping a fixed time.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import itertools
import json
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from .._choreography import Choreography, Handler
from .._saga import Saga
from .._world._bus import BusRecord, DeadLetter, Delivery, Message, refused_for_good
from ._errors import BrokerError, BrokerUnavailableError

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.js.client import JetStreamContext

T = TypeVar("T")

#: Real seconds the broker may take to deliver what it holds (a redelivery after the ack wait
#: included) before the run is declared stuck. Generous: a busy 2-core machine is slow.
SETTLE_WITHIN = 120.0

_EXECUTIONS = itertools.count(1)


class NatsBroker:
    """A connection to a NATS server with JetStream, and the bus of every execution of a
    choreography run over it: pass it as ``Choreography(broker=...)``, or take `over` of a
    choreographed saga. One connection serves every execution; close it when done.

    ``ack_wait``: real seconds before the broker redelivers a message nobody acknowledged (a
    consumer that crashed, or never got it). ``nack_delay``: real seconds before it redelivers a
    message its handler refused by raising. ``settle_within``: real seconds a run may take to
    reach quiescence before it is an error."""

    def __init__(
        self,
        url: str,
        *,
        ack_wait: float = 1.0,
        nack_delay: float = 0.02,
        settle_within: float = SETTLE_WITHIN,
        connect_within: float = 10.0,
        stream: str = "SAGA",
    ) -> None:
        for name, value in (("ack_wait", ack_wait), ("settle_within", settle_within), ("connect_within", connect_within)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise BrokerError(f"NatsBroker {name} must be a number of seconds > 0, got {value!r}")
        if isinstance(nack_delay, bool) or not isinstance(nack_delay, (int, float)) or not nack_delay >= 0:
            raise BrokerError(f"NatsBroker nack_delay must be a number of seconds >= 0, got {nack_delay!r}")
        if not isinstance(stream, str) or not stream or not all(c.isalnum() or c in "_-" for c in stream):
            raise BrokerError(f"NatsBroker stream {stream!r}: use letters, digits, '_' and '-' only (JetStream refuses the rest)")
        if not isinstance(url, str) or not url.startswith(("nats://", "tls://")):
            raise BrokerError(f"NatsBroker url must read nats://host:port, got {url!r}")
        self.url = url
        self.ack_wait = float(ack_wait)
        self.nack_delay = float(nack_delay)
        self.settle_within = float(settle_within)
        self.connect_within = float(connect_within)
        self.stream = stream
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client: Client | None = None
        self._lock = threading.Lock()

    # -- using it ------------------------------------------------------------------------------
    def over(self, saga: Saga) -> Saga:
        """The same choreographed saga with its messages on this broker."""
        choreography = getattr(saga, "choreography", None)
        if not isinstance(choreography, Choreography):
            raise BrokerError(f"saga {getattr(saga, 'name', saga)!r} is not a choreography: only a choreography's messages go through a broker")
        return replace(choreography, broker=self).saga

    def __call__(self, world: Any, choreography: Choreography) -> JetStreamBus:
        """Open the bus of one execution (the ``broker=`` hook of a `Choreography`)."""
        return JetStreamBus(self, world, choreography)

    def __enter__(self) -> NatsBroker:
        self.connect()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def connect(self) -> None:
        """Connect now (else at the first execution); raises `BrokerError` naming the server when
        it cannot be reached."""
        with self._lock:
            if self._client is not None:
                return
            nats = _nats()
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever, name="saga-verify-nats", daemon=True)
            self._thread.start()
            try:
                self._client = self._call(lambda: self._connect(nats), self.connect_within * 3)
            except BaseException:
                self._stop_loop()
                raise

    def close(self) -> None:
        """Close the connection and stop its thread (streams of executions that never ended are
        deleted with it)."""
        with self._lock:
            client, self._client = self._client, None
            if client is not None:
                try:
                    self._call(lambda: _close(client), 30.0)
                except Exception:
                    pass  # a server already gone has nothing left to close
            self._stop_loop()

    # -- the event loop the client lives on ----------------------------------------------------
    def _call(self, make: Callable[[], Awaitable[T]], timeout: float) -> T:
        """Run a coroutine on the client's loop and wait for it. It starts in an empty context: an
        execution's context (its virtual clocks) must not follow into the client's tasks."""
        loop = self._loop
        if loop is None:
            raise BrokerError(f"the connection to {self.url} is closed")
        done: concurrent.futures.Future[T] = concurrent.futures.Future()

        def start() -> None:
            task: asyncio.Task[T] = loop.create_task(make())  # type: ignore[arg-type]

            def settle(finished: asyncio.Task[T]) -> None:
                if finished.cancelled():
                    done.cancel()
                elif finished.exception() is not None:
                    done.set_exception(finished.exception())
                else:
                    done.set_result(finished.result())

            task.add_done_callback(settle)

        loop.call_soon_threadsafe(start, context=contextvars.Context())
        try:
            return done.result(timeout)
        except concurrent.futures.TimeoutError:
            raise BrokerError(f"the NATS server at {self.url} did not answer within {timeout:g} s") from None

    def _stop_loop(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
            if thread is not None:
                thread.join(timeout=30)
            loop.close()

    async def _connect(self, nats: Any) -> Client:
        errors: list[BaseException] = []

        async def remember(exc: BaseException) -> None:
            errors.append(exc)  # told in the BrokerError below, not logged as it happens

        try:
            # nats-py reads max_reconnect_attempts=0 as "for ever": one try and one retry.
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

    def _jetstream(self) -> JetStreamContext:
        if self._client is None:
            self.connect()
        assert self._client is not None
        return self._client.jetstream()


@dataclass
class _Consumer:
    """One handler's durable consumer and what this side holds of it."""

    handler: Handler
    name: str
    subscription: Any = None
    #: A message fetched and not yet given to the driver.
    ready: tuple[Delivery, Msg] | None = None
    #: Set when the last message given out was settled: the fetcher may take the next one.
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    #: Deliveries given back to the broker (nacked or left to the ack wait) and not fetched again.
    away: set[int] = field(default_factory=set)


class JetStreamBus:
    """The bus of one execution on a JetStream server (the `MessageBroker` of `_world._bus`)."""

    def __init__(self, connection: NatsBroker, world: Any, choreography: Choreography) -> None:
        self.connection = connection
        self.world = world
        self.choreography = choreography
        self.messages: list[Message] = []
        self.deliveries: list[Delivery] = []
        run = f"{next(_EXECUTIONS)}_{uuid.uuid4().hex[:8]}"
        self.stream = f"{connection.stream}_{run}"
        self.dead_letter_stream = f"{self.stream}_DLQ"
        self._prefix = f"sv.{run}"
        self._by_key: dict[tuple[int, int], Delivery] = {}  # (stream seq, handler index) -> delivery
        self._held: dict[int, tuple[_Consumer, Msg, int]] = {}  # id(delivery) -> consumer, msg, faulted then
        self._consumers: list[_Consumer] = []
        self._failure: BaseException | None = None
        self._arrived: asyncio.Event | None = None
        #: Notified when a publish has registered its deliveries, up to stream sequence `_last_seq`.
        self._registered: asyncio.Condition | None = None
        self._last_seq = 0
        self._advisories: Any = None
        self._recorded: BusRecord | None = None
        connection._call(self._open, connection.connect_within * 3)

    # -- the seam ------------------------------------------------------------------------------
    def publish(self, message: Message, handlers: tuple[Handler, ...]) -> None:
        self.connection._call(lambda: self._publish(message, handlers), self.connection.settle_within)

    def receive(self) -> Delivery | None:
        return self.connection._call(self._receive, self.connection.settle_within + 30)

    def ack(self, delivery: Delivery) -> None:
        if delivery.state == "pending":
            delivery.state = "acked"
            self.connection._call(lambda: self._settle(delivery, "ack"), self.connection.settle_within)

    def nack(self, delivery: Delivery, reason: str) -> None:
        if refused_for_good(self, self.choreography, delivery, reason):
            return
        # On the virtual clock as on the simulated bus; the broker's real redelivery comes when it comes.
        delivery.due = self.world.clock._now + self.choreography.redelivery_delay
        held = self._held.get(id(delivery))
        # A delivery a fault disturbed (lost, crashed, held) is never acknowledged: the broker
        # delivers it again when its ack wait runs out. A handler that raised on its own nacks it.
        crashed = held is not None and delivery.faulted > held[2]
        self.connection._call(lambda: self._settle(delivery, "leave" if crashed else "nak"), self.connection.settle_within)
        if crashed:
            how = f"left unacknowledged: the broker redelivers it when its ack wait ({self.connection.ack_wait:g} s real) runs out"
        else:
            how = "nacked: the broker redelivers it"
        self.world.note(self.world.clock._now, "nacked", f"{delivery} {how}")

    def dead_letter(self, delivery: Delivery, reason: str, poison: bool, rejected: bool = False) -> None:
        if delivery.state != "pending":
            return
        delivery.state = "dead-lettered"
        delivery.reason = reason
        self.connection._call(lambda: self._dead_letter(delivery, reason, poison, rejected), self.connection.settle_within)
        self.world.note(self.world.clock._now, "dead-lettered", f"{delivery} dead-lettered: {reason}")

    def record(self) -> BusRecord:
        if self._recorded is None:
            self._recorded = self.connection._call(self._close, self.connection.settle_within)
        return self._recorded

    # -- set-up ----------------------------------------------------------------------------------
    async def _open(self) -> None:
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType

        js = self.connection._jetstream()
        self._arrived = asyncio.Event()
        self._registered = asyncio.Condition()
        for name, subjects in ((self.stream, [f"{self._prefix}.ev.>"]), (self.dead_letter_stream, [f"{self._prefix}.dlq.>"])):
            try:
                # In memory: an execution's streams live for one execution, and a file store's
                # creation costs more than the rest of a fault-free run.
                await js.add_stream(name=name, subjects=subjects, storage=StorageType.MEMORY)
            except Exception as exc:
                raise BrokerError(
                    f"cannot create JetStream stream {name!r} (subjects {subjects}) on {self.connection.url}: "
                    f"{type(exc).__name__}: {exc} (is JetStream on: nats-server -js?)"
                ) from exc
        limit = self.choreography.max_attempts
        client = self.connection._client
        assert client is not None
        self._advisories = await client.subscribe(f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{self.stream}.*", cb=self._gave_up)

        async def subscribe(index: int, handler: Handler) -> _Consumer:
            consumer = _Consumer(handler, f"{handler.service}-{handler.method}")
            config = ConsumerConfig(
                durable_name=consumer.name,
                filter_subject=self._subject(handler.on),
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=self.connection.ack_wait,
                # Our own bound dead-letters first; the broker's (two more) is the backstop for a
                # message redelivered behind our back (an ack wait that ran out on a slow machine).
                max_deliver=-1 if limit is None else limit + 2,
            )
            try:
                await js.add_consumer(self.stream, config)
                consumer.subscription = await js.pull_subscribe_bind(consumer.name, self.stream)
            except Exception as exc:
                raise BrokerError(
                    f"cannot create consumer {consumer.name!r} on stream {self.stream!r} at {self.connection.url}: {type(exc).__name__}: {exc}"
                ) from exc
            consumer.settled.set()
            consumer.task = asyncio.get_running_loop().create_task(self._fetch(index, consumer))
            return consumer

        self._consumers = list(await asyncio.gather(*(subscribe(i, h) for i, h in enumerate(self.choreography.handlers))))

    def _subject(self, event_type: str) -> str:
        return f"{self._prefix}.ev.{event_type if event_type != '?' else '_untyped'}"

    # -- publishing ------------------------------------------------------------------------------
    async def _publish(self, message: Message, handlers: tuple[Handler, ...]) -> None:
        js = self.connection._jetstream()
        body = json.dumps(message.envelope, sort_keys=True, default=str).encode()
        try:
            ack = await js.publish(self._subject(message.type), body, stream=self.stream)
        except Exception as exc:
            raise BrokerError(f"cannot publish {message.type} {message.id} to stream {self.stream!r} at {self.connection.url}: {type(exc).__name__}: {exc}") from exc
        # What the consumers get is what went over the wire, decoded.
        wire = replace(message, envelope=json.loads(body))
        self.messages.append(wire)
        registered = self._registered
        assert registered is not None
        async with registered:
            for index, handler in enumerate(self.choreography.handlers):
                if handler in handlers:
                    delivery = Delivery(wire, handler, wire.time)
                    self.deliveries.append(delivery)
                    self._by_key[(ack.seq, index)] = delivery
            self._last_seq = max(self._last_seq, ack.seq)
            registered.notify_all()

    # -- consuming -------------------------------------------------------------------------------
    async def _fetch(self, index: int, consumer: _Consumer) -> None:
        """Keep one message of this consumer ready for the driver, fetching the next only once the
        last one given out was settled (so at most one is unacknowledged at a time on our side)."""
        nats_timeout = _nats().errors.TimeoutError
        arrived, registered = self._arrived, self._registered
        assert arrived is not None
        assert registered is not None
        try:
            while True:
                await consumer.settled.wait()
                try:
                    fetched = await consumer.subscription.fetch(1, timeout=1.0)
                except (nats_timeout, TimeoutError):
                    continue
                for msg in fetched:
                    seq = msg.metadata.sequence.stream
                    # A consumer may get a message before its publisher has the broker's answer
                    # (its sequence number): wait for the publisher to say whose it is.
                    async with registered:
                        await registered.wait_for(lambda seq=seq: seq <= self._last_seq)  # type: ignore[misc]
                    delivery = self._by_key.get((seq, index))
                    if delivery is None or delivery.state != "pending":
                        # Redelivered by the broker after we settled it (its ack wait ran out
                        # while a slow machine handled it): the plan's deliveries are counted by
                        # what the driver hands out, so it is acknowledged and not given again.
                        await msg.ack()
                        continue
                    consumer.away.discard(id(delivery))
                    consumer.settled.clear()
                    consumer.ready = (delivery, msg)
                    arrived.set()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._failure = exc
            arrived.set()

    async def _receive(self) -> Delivery | None:
        """The next delivery: once every consumer with nothing in hand has nothing pending at the
        broker either, the one due first (then published first). None once nothing is pending,
        nothing unacknowledged and nothing in hand."""
        js = self.connection._jetstream()
        arrived = self._arrived
        assert arrived is not None
        deadline = time.monotonic() + self.connection.settle_within
        while True:
            if self._failure is not None:
                raise BrokerError(f"consuming from stream {self.stream!r} at {self.connection.url} failed: {self._failure!r}") from self._failure
            arrived.clear()
            in_hand = [c for c in self._consumers if c.ready is not None]
            empty = [c for c in self._consumers if c.ready is None]
            infos = await asyncio.gather(*(js.consumer_info(self.stream, c.name) for c in empty))
            pending = sum(i.num_pending or 0 for i in infos)
            unacked = sum(i.num_ack_pending or 0 for i in infos)
            # A message the broker sent that is not in hand yet (only redeliveries may be away).
            in_transit = sum(max(0, (i.num_ack_pending or 0) - len(c.away)) for c, i in zip(empty, infos, strict=True))
            if in_hand and pending == 0 and in_transit == 0:
                chosen = min(in_hand, key=lambda c: (c.ready[0].due, c.ready[0].message.seq, self._consumers.index(c)))  # type: ignore[index]
                assert chosen.ready is not None
                delivery, msg = chosen.ready
                chosen.ready = None
                self._held[id(delivery)] = (chosen, msg, delivery.faulted)
                decoded = json.loads(msg.data)
                if decoded != delivery.message.envelope:  # pragma: no cover  # the broker changed a message
                    delivery.message = replace(delivery.message, envelope=decoded)
                return delivery
            if not in_hand and pending == 0 and unacked == 0:
                # Every consumer's count includes what the broker sent and we have not read yet
                # (unacknowledged), so nothing more can come: no second look a fixed time later.
                return None
            if time.monotonic() >= deadline:
                raise BrokerError(
                    f"stream {self.stream!r} at {self.connection.url} did not settle within {self.connection.settle_within:g} s: "
                    f"{pending} message(s) pending and {unacked} unacknowledged"
                )
            try:
                await asyncio.wait_for(arrived.wait(), 0.02)
            except TimeoutError:
                pass

    async def _settle(self, delivery: Delivery, how: str) -> None:
        held = self._held.pop(id(delivery), None)
        if held is None:
            return
        consumer, msg, _ = held
        try:
            if how == "ack":
                await msg.ack_sync(timeout=self.connection.settle_within)
            elif how == "nak":
                await msg.nak(delay=self.connection.nack_delay or None)
            if how != "ack":
                consumer.away.add(id(delivery))
            # "leave": no answer at all; the broker's ack wait runs out and it delivers again.
        except Exception as exc:
            raise BrokerError(f"cannot {how} {delivery} on stream {self.stream!r} at {self.connection.url}: {type(exc).__name__}: {exc}") from exc
        finally:
            consumer.settled.set()

    async def _dead_letter(self, delivery: Delivery, reason: str, poison: bool, rejected: bool) -> None:
        js = self.connection._jetstream()
        index = self.choreography.handlers.index(delivery.handler)
        seq = next((s for (s, i), d in self._by_key.items() if d is delivery and i == index), None)
        body = {"seq": seq, "handler": index, "reason": reason, "attempts": delivery.attempts, "poison": poison, "rejected": rejected}
        try:
            await js.publish(f"{self._prefix}.dlq.{delivery.handler.service}.{delivery.handler.method}", json.dumps(body).encode(), stream=self.dead_letter_stream)
        except Exception as exc:
            raise BrokerError(f"cannot dead-letter {delivery} to stream {self.dead_letter_stream!r} at {self.connection.url}: {type(exc).__name__}: {exc}") from exc
        held = self._held.pop(id(delivery), None)
        if held is not None:
            consumer, msg, _ = held
            try:
                await msg.term()  # the broker never delivers it again
            finally:
                consumer.settled.set()

    async def _gave_up(self, advisory: Msg) -> None:
        """The broker's own bound was reached (a message redelivered behind our back until it
        ran out of deliveries): it goes to the dead-letter stream like any other."""
        try:
            data = json.loads(advisory.data)
            index = next(i for i, c in enumerate(self._consumers) if c.name == data.get("consumer"))
            delivery = self._by_key.get((int(data["stream_seq"]), index))
            if delivery is not None and delivery.state == "pending":
                delivery.state = "dead-lettered"
                delivery.reason = f"the broker gave up after {data.get('deliveries')} deliveries (MaxDeliver)"
                await self._dead_letter(delivery, delivery.reason, False, False)
        except Exception as exc:
            self._failure = self._failure or exc

    # -- the end ---------------------------------------------------------------------------------
    async def _close(self) -> BusRecord:
        js = self.connection._jetstream()
        for consumer in self._consumers:
            if consumer.task is not None:
                consumer.task.cancel()
        await asyncio.gather(*(c.task for c in self._consumers if c.task is not None), return_exceptions=True)
        if self._advisories is not None:
            await _quietly(self._advisories.unsubscribe())
        try:
            dead_letters = await self._read_dead_letters(js)
        finally:
            await _quietly(js.delete_stream(self.dead_letter_stream))
            await _quietly(js.delete_stream(self.stream))
        return BusRecord(tuple(self.messages), tuple(self.deliveries), dead_letters)

    async def _read_dead_letters(self, js: JetStreamContext) -> tuple[DeadLetter, ...]:
        """The dead letters as the broker keeps them, in the order they were parked."""
        info = await js.stream_info(self.dead_letter_stream)
        letters: list[DeadLetter] = []
        for seq in range(info.state.first_seq or 1, (info.state.last_seq or 0) + 1):
            stored = await js.get_msg(self.dead_letter_stream, seq)
            body = json.loads(stored.data or b"{}")
            delivery = self._by_key[(int(body["seq"]), int(body["handler"]))]
            letters.append(
                DeadLetter(delivery.message, delivery.handler, str(body["reason"]), int(body["attempts"]), bool(body["poison"]), bool(body["rejected"]))
            )
        return tuple(letters)


async def _close(client: Client) -> None:
    await client.close()


async def _quietly(awaitable: Awaitable[Any]) -> None:
    try:
        await awaitable
    except Exception:
        pass  # tidying up: a stream already gone has nothing left to tidy


def _nats() -> Any:
    """nats-py, imported when a broker is first used: importing saga_verify never loads it."""
    try:
        import nats
        import nats.errors
    except ImportError as exc:
        raise BrokerUnavailableError("the NATS client is not installed: pip install 'saga-verify[broker]' (nats-py)") from exc
    return nats
