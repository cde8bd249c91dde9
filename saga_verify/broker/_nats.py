"""A choreography's bus on a real NATS JetStream server: each execution gets its own stream and
dead-letter stream, one durable pull consumer per handler with explicit acknowledgement, and the
broker's own redelivery (a nack, or the ack wait running out) and delivery bound.

Faults stay the plan's: each publish and each delivery to a handler is a delivery point of the
world's transport (``inventory.publish#1``, ``payment.charge#2``), so a duplicate publish reaches
the broker twice, and a delivery that a fault lost, crashed or held is never acknowledged and comes
back when the broker's ack wait runs out. The broker's timing is real and differs from run to
run, so it never decides the order: which delivery comes next is decided as on the simulated bus,
and the driver waits for the broker to bring that one (never a fixed time); the run ends when
every delivery is acknowledged or dead-lettered.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import json
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field, replace
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from .._choreography import Choreography, Handler
from .._saga import Saga
from .._world._bus import BusRecord, DeadLetter, Delivery, Message, refused_for_good
from ._background import start_on
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
    message its handler refused by raising. ``settle_within``: real seconds the broker may take
    to bring the delivery a run waits for (or to answer a publish, an ack, the close) before it
    is an error."""

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
    def _call(self, make: Callable[[], Coroutine[Any, Any, T]], timeout: float) -> T:
        """Run a coroutine on the client's loop and wait for it. It starts in an empty context: an
        execution's context (its virtual clocks) must not follow into the client's tasks."""
        loop = self._loop
        if loop is None:
            raise BrokerError(f"the connection to {self.url} is closed")
        done = start_on(loop, make)
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


#: Real seconds between two looks at a consumer whose next delivery has not come: does the broker
#: still hold it (not delivered yet, or delivered and not acknowledged), or can it never come?
_LOOK_EVERY = 0.5


@dataclass
class _Consumer:
    """One handler's durable consumer and what this side holds of it."""

    handler: Handler
    name: str
    subscription: Any = None
    #: Messages the broker delivered that the driver has not taken yet, by stream sequence (the
    #: newest copy of each), with the real time their ack wait was last reset.
    fetched: dict[int, tuple[Msg, float]] = field(default_factory=dict)
    #: Set whenever a message is fetched, or fetching failed.
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class JetStreamBus:
    """The bus of one execution on a JetStream server (the `MessageBroker` of `_world._bus`).

    Which delivery comes next is decided here, as the simulated bus decides it (due first, then
    queued first), never by the order or the moment the broker's messages arrive: the broker's
    timing is real and differs from run to run, the plan's trace must not. The broker carries
    every message and every redelivery; the driver waits for the one it is owed."""

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
        self._keys: dict[int, tuple[int, int]] = {}  # id(delivery) -> (stream seq, handler index)
        #: id(delivery) -> when it was last queued (published, or refused): among deliveries due
        #: at once, the one queued first goes first, as on the simulated bus.
        self._queued: dict[int, int] = {}
        self._queue_order = itertools.count()
        self._held: dict[int, tuple[_Consumer, Msg, int]] = {}  # id(delivery) -> consumer, msg, faulted then
        self._consumers: list[_Consumer] = []
        self._failure: BaseException | None = None
        self._closing = False
        self._advisories: Any = None
        self._recorded: BusRecord | None = None
        connection._call(self._open, connection.connect_within * 3)

    # -- the seam ------------------------------------------------------------------------------
    def publish(self, message: Message, handlers: tuple[Handler, ...]) -> None:
        self.connection._call(lambda: self._publish(message, handlers), self.connection.settle_within)

    def receive(self) -> Delivery | None:
        while True:
            waiting = [d for d in self.deliveries if d.state == "pending" and id(d) not in self._held]
            if not waiting:
                # Every delivery acknowledged or dead-lettered: nothing more can come.
                return None
            delivery = min(waiting, key=lambda d: (d.due, self._queued[id(d)]))
            pending = self.world.pending
            if delivery.due > self.world.clock._now and pending and pending[0][0] < delivery.due:
                # What the network holds lands before this is due: the driver lands it first.
                return None
            if self.connection._call(partial(self._take, delivery), self.connection.settle_within + 30):
                return delivery
            # The broker gave up on it meanwhile (its own delivery bound): choose again.

    def ack(self, delivery: Delivery) -> None:
        if delivery.state == "pending":
            delivery.state = "acked"
            self.connection._call(lambda: self._settle(delivery, "ack"), self.connection.settle_within)

    def nack(self, delivery: Delivery, reason: str) -> None:
        if refused_for_good(self, self.choreography, delivery, reason):
            return
        # On the virtual clock as on the simulated bus; the broker's real redelivery comes when it comes.
        delivery.due = self.world.clock._now + self.choreography.redelivery_delay
        self._queued[id(delivery)] = next(self._queue_order)
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
        due = wire.time if wire.due is None else wire.due
        for index, handler in enumerate(self.choreography.handlers):
            if handler in handlers:
                delivery = Delivery(wire, handler, due)
                self.deliveries.append(delivery)
                self._by_key[(ack.seq, index)] = delivery
                self._keys[id(delivery)] = (ack.seq, index)
                self._queued[id(delivery)] = next(self._queue_order)

    # -- consuming -------------------------------------------------------------------------------
    async def _fetch(self, index: int, consumer: _Consumer) -> None:
        """Take every message the broker delivers to this consumer as it comes and keep it until
        the driver asks for it; keep the ack wait of those kept from running out meanwhile (only
        a delivery the driver gave back is left to the broker's ack wait)."""
        nats_timeout = _nats().errors.TimeoutError
        refresh = self.connection.ack_wait / 3
        try:
            # Checked on every turn, not only cancelled: a cancellation that meets a message
            # arriving at the same moment is swallowed by asyncio.wait_for on Python 3.11.
            while not self._closing:
                try:
                    fetched = await consumer.subscription.fetch(1, timeout=min(_LOOK_EVERY, refresh))
                except (nats_timeout, TimeoutError):
                    fetched = []
                now = time.monotonic()
                for msg in fetched:
                    await self._keep(index, consumer, msg, now)
                for seq, (msg, touched) in list(consumer.fetched.items()):
                    if now - touched >= refresh:
                        await msg.in_progress()  # still wanted: the broker restarts its ack wait
                        consumer.fetched[seq] = (msg, now)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            if not self._closing:
                self._failure = self._failure or exc
        finally:
            consumer.arrived.set()

    async def _keep(self, index: int, consumer: _Consumer, msg: Msg, now: float) -> None:
        seq = msg.metadata.sequence.stream
        # Its publisher may not have the broker's answer (the sequence number) yet: kept all the
        # same, found by its number when the driver asks for it.
        delivery = self._by_key.get((seq, index))
        if delivery is not None and delivery.state != "pending" and id(delivery) not in self._held:
            # Redelivered by the broker after it was settled (its ack wait ran out while a slow
            # machine handled it): the plan's deliveries are counted by what the driver hands
            # out, so it is settled again and never handed out.
            await (msg.ack() if delivery.state == "acked" else msg.term())
            return
        consumer.fetched[seq] = (msg, now)
        consumer.arrived.set()

    async def _take(self, delivery: Delivery) -> bool:
        """Wait until the broker has delivered ``delivery``'s message to its consumer, and hold it
        for the driver: True. False when it was dead-lettered meanwhile (the broker gave up)."""
        js = self.connection._jetstream()
        seq, index = self._keys[id(delivery)]
        consumer = self._consumers[index]
        deadline = time.monotonic() + self.connection.settle_within
        empty_looks = 0
        while True:
            if self._failure is not None:
                raise BrokerError(f"consuming from stream {self.stream!r} at {self.connection.url} failed: {self._failure!r}") from self._failure
            if delivery.state != "pending":
                return False
            kept = consumer.fetched.pop(seq, None)
            if kept is not None:
                msg = kept[0]
                self._held[id(delivery)] = (consumer, msg, delivery.faulted)
                decoded = json.loads(msg.data)
                if decoded != delivery.message.envelope:  # pragma: no cover  # the broker changed a message
                    delivery.message = replace(delivery.message, envelope=decoded)
                return True
            consumer.arrived.clear()
            try:
                await asyncio.wait_for(consumer.arrived.wait(), _LOOK_EVERY)
                continue
            except TimeoutError:
                pass
            # Late (a redelivery after the ack wait, a slow machine): does the broker still hold it?
            info = await js.consumer_info(self.stream, consumer.name)
            pending, unacked = info.num_pending or 0, info.num_ack_pending or 0
            # Everything it counts for this consumer is here already, and this is not among it:
            # seen three times in a row (the counters lag a moment; an advisory that the broker gave
            # up on it may be on its way), it never comes.
            empty_looks = empty_looks + 1 if pending == 0 and unacked <= len(consumer.fetched) else 0
            state = (
                f"stream {self.stream!r} sequence {seq}, consumer {consumer.name!r}: the broker has {pending} message(s) pending "
                f"and {unacked} unacknowledged for it, {len(consumer.fetched)} delivered and not taken"
            )
            if empty_looks >= 3:
                raise BrokerError(f"{delivery} was never delivered again, and the broker holds nothing more that could be it ({state})")
            if time.monotonic() >= deadline:
                raise BrokerError(f"{delivery} was not delivered again within {self.connection.settle_within:g} s ({state})")

    async def _settle(self, delivery: Delivery, how: str) -> None:
        held = self._held.pop(id(delivery), None)
        if held is None:
            return
        consumer, msg, _ = held
        seq, _ = self._keys[id(delivery)]
        try:
            if how == "ack":
                await msg.ack()
                copy = consumer.fetched.pop(seq, None)
                if copy is not None:
                    await copy[0].ack()  # the broker redelivered it meanwhile: that copy is done too
            elif how == "nak":
                await msg.nak(delay=self.connection.nack_delay or None)
            # "leave": no answer at all; the broker's ack wait runs out and it delivers again.
        except Exception as exc:
            raise BrokerError(f"cannot {how} {delivery} on stream {self.stream!r} at {self.connection.url}: {type(exc).__name__}: {exc}") from exc

    async def _dead_letter(self, delivery: Delivery, reason: str, poison: bool, rejected: bool) -> None:
        js = self.connection._jetstream()
        seq, index = self._keys[id(delivery)]
        body = {"seq": seq, "handler": index, "reason": reason, "attempts": delivery.attempts, "poison": poison, "rejected": rejected}
        try:
            await js.publish(f"{self._prefix}.dlq.{delivery.handler.service}.{delivery.handler.method}", json.dumps(body).encode(), stream=self.dead_letter_stream)
        except Exception as exc:
            raise BrokerError(f"cannot dead-letter {delivery} to stream {self.dead_letter_stream!r} at {self.connection.url}: {type(exc).__name__}: {exc}") from exc
        consumer = self._consumers[index]
        held = self._held.pop(id(delivery), None)
        copies = [held[1]] if held is not None else []
        kept = consumer.fetched.pop(seq, None)
        if kept is not None:
            copies.append(kept[0])
        for msg in copies:
            await msg.term()  # the broker never delivers it again

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
        self._closing = True
        fetching = [c for c in self._consumers if c.task is not None and not c.task.done()]
        deadline = time.monotonic() + self.connection.connect_within
        while fetching:
            # Cancelled again until it ends: a cancellation can be swallowed (see _fetch), and a
            # fetcher that saw _closing ends by itself after its current fetch anyway.
            for consumer in fetching:
                assert consumer.task is not None
                consumer.task.cancel()
            await asyncio.wait([c.task for c in fetching if c.task is not None], timeout=0.1)
            fetching = [c for c in fetching if c.task is not None and not c.task.done()]
            if fetching and time.monotonic() >= deadline:
                break
        if self._advisories is not None:
            await _quietly(self._advisories.unsubscribe())
        try:
            dead_letters = await self._read_dead_letters(js)
        finally:
            await _quietly(js.delete_stream(self.dead_letter_stream))
            await _quietly(js.delete_stream(self.stream))
        if fetching:
            names = ", ".join(repr(c.name) for c in fetching)
            raise BrokerError(
                f"the consumer(s) {names} of stream {self.stream!r} at {self.connection.url} were still fetching "
                f"{self.connection.connect_within:g} s after the execution ended"
            )
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
