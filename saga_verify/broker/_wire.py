"""The NATS client protocol between one user service and the server, owned by the harness: a proxy
per service that passes every frame through, and hands the ones the plan may disturb (a publish
by the service, a JetStream delivery to it) to the execution's driver, which decides their fate.

The protocol is text: a frame is a line (``PUB subject [reply] size``, ``MSG subject sid [reply]
size``, ``PING``...) followed, for ``PUB``/``HPUB``/``MSG``/``HMSG``, by a payload of that size.
A JetStream delivery is a ``MSG`` whose reply subject is ``$JS.ACK.<stream>.<consumer>...``; the
service's answer (``+ACK``, ``-NAK``, ``+WPI``, ``+TERM``) is a ``PUB`` to that subject; a
JetStream publish is a ``PUB`` with a reply inbox, answered by a ``MSG`` to it (the PubAck).
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

#: Where a JetStream delivery's answer goes; its tokens name the stream and the consumer.
ACK_PREFIX = "$JS.ACK."
_PAYLOAD_OPS = frozenset({b"PUB", b"HPUB", b"MSG", b"HMSG"})
#: The answer the proxy sends for a service when the plan lost its delivery or its ack: the
#: broker delivers the message again, as it would once its ack wait ran out (without the wait).
NAK = b"-NAK"


@dataclass(frozen=True)
class RawFrame:
    """One protocol frame as it crossed the wire."""

    op: bytes
    """``PUB``, ``MSG``, ``PING``... upper-cased."""
    line: bytes
    """The control line, without its ``\\r\\n``."""
    payload: bytes = b""
    """For a frame with a payload: the payload (headers included for ``HPUB``/``HMSG``) and its ``\\r\\n``."""

    @property
    def args(self) -> list[str]:
        return self.line.decode(errors="replace").split()[1:]

    def encode(self) -> bytes:
        return self.line + b"\r\n" + self.payload


async def read_frame(reader: asyncio.StreamReader) -> RawFrame | None:
    """The next frame, or None once the peer closed."""
    try:
        line = await reader.readuntil(b"\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    line = line[:-2]
    op = line.split(b" ", 1)[0].split(b"\t", 1)[0].upper()
    if op not in _PAYLOAD_OPS:
        return RawFrame(op, line)
    try:
        size = int(line.split()[-1])
        payload = await reader.readexactly(size + 2)
    except (ValueError, asyncio.IncompleteReadError, ConnectionError):
        return None
    return RawFrame(op, line, payload)


def consumer_of(ack_subject: str) -> tuple[str, str, int] | None:
    """(stream, consumer, delivery count) named by a ``$JS.ACK`` subject, in its short form
    (``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>``) or its long one
    (with a domain and an account hash before the stream); None for another subject."""
    if not ack_subject.startswith(ACK_PREFIX):
        return None
    tokens = ack_subject.split(".")
    if len(tokens) == 9:
        stream, consumer, delivered = tokens[2], tokens[3], tokens[4]
    elif len(tokens) >= 12:
        stream, consumer, delivered = tokens[4], tokens[5], tokens[6]
    else:
        return None
    try:
        return stream, consumer, int(delivered)
    except ValueError:
        return None


@dataclass
class Intercepted:
    """A frame the plan may disturb, waiting for the driver: a publish by ``service`` or a
    delivery to one of its consumers. The driver forwards it (zero, one or more times) and then
    `release`\\ s the proxy, which reads nothing more from that side until then."""

    kind: str
    """``publish`` or ``delivery``."""
    service: str
    operation: str
    """``publish``, or the consumer's name for a delivery."""
    frame: RawFrame
    connection: Connection
    subject: str
    reply: str | None
    released: asyncio.Future[None]
    #: How many times the plan let it through while the driver decides it (a duplicate: twice).
    forwarded: int = 0
    #: True while the driver decides it: a copy sent on then is counted, not sent at once.
    deciding: bool = False

    @property
    def data(self) -> bytes:
        """The message's body (after its headers, for ``HPUB``/``HMSG``)."""
        body = self.frame.payload[:-2]
        if self.frame.op in (b"HPUB", b"HMSG"):
            header_size = int(self.frame.args[-2])
            body = body[header_size:]
        return body

    def forward(self) -> None:
        """Send it on (from the driver's thread): to the server for a publish, to the service
        for a delivery."""
        self.forwarded += 1
        if self.kind == "publish":
            self.connection.to_server(self.frame.encode())
        else:
            self.connection.to_client(self.frame.encode())

    def release(self) -> None:
        """Let the proxy go on reading (from the driver's thread)."""
        loop = self.released.get_loop()
        loop.call_soon_threadsafe(_resolve, self.released)

    def __repr__(self) -> str:
        text = self.data.decode(errors="replace")
        shown = text if len(text) <= 120 else text[:117] + "..."
        return f"{self.subject} {shown}"


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


@dataclass
class Hub:
    """What every proxy of one execution shares with its driver: the frames waiting for a
    decision, which answers to lose, and when the wire last moved."""

    consumers: dict[str, frozenset[str]]
    """Per service, the consumers whose deliveries are delivery points."""
    waiting: queue.Queue[Intercepted] = field(default_factory=queue.Queue)
    #: PubAck inboxes whose answer the plan lost: the publisher never hears it.
    lost_replies: set[str] = field(default_factory=set)
    #: Ack subjects whose answer the plan lost: the proxy answers -NAK in its place.
    lost_acks: set[str] = field(default_factory=set)
    #: Ack subjects forwarded to a service -> (service.consumer#n, subject, real time forwarded),
    #: until the service answers.
    unanswered: dict[str, tuple[str, str, float]] = field(default_factory=dict)
    #: Frames that crossed any proxy (both ways): a quiet check sees whether anything moved.
    moved: int = 0
    #: A frame refused for a reason the driver reports (a delivery to a consumer nobody declared).
    refused: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Connection:
    """One client connection of a service through its proxy, and its connection to the server."""

    def __init__(self, proxy: ServiceProxy, client: tuple[asyncio.StreamReader, asyncio.StreamWriter], server: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        self.proxy = proxy
        self.client_reader, self.client_writer = client
        self.server_reader, self.server_writer = server
        self.loop = asyncio.get_running_loop()

    def to_server(self, data: bytes) -> None:
        self.loop.call_soon_threadsafe(_write, self.server_writer, data)

    def to_client(self, data: bytes) -> None:
        self.loop.call_soon_threadsafe(_write, self.client_writer, data)

    async def pump_from_client(self) -> None:
        hub = self.proxy.hub
        while (frame := await read_frame(self.client_reader)) is not None:
            hub.moved += 1
            if frame.op in (b"PUB", b"HPUB"):
                args = frame.args
                subject = args[0]
                reply = args[1] if len(args) == (4 if frame.op == b"HPUB" else 3) else None
                if subject.startswith(ACK_PREFIX):
                    with hub.lock:
                        hub.unanswered.pop(subject, None)
                        lost = subject in hub.lost_acks
                        hub.lost_acks.discard(subject)
                    if lost:
                        # The ack never reaches the broker: it delivers again, as after its ack wait.
                        _write(self.server_writer, nak(subject))
                        continue
                elif not subject.startswith(("$", "_INBOX")):
                    await self._intercept("publish", "publish", frame, subject, reply)
                    continue
            _write(self.server_writer, frame.encode())
            await self.server_writer.drain()

    async def pump_from_server(self) -> None:
        hub = self.proxy.hub
        while (frame := await read_frame(self.server_reader)) is not None:
            hub.moved += 1
            if frame.op in (b"MSG", b"HMSG"):
                args = frame.args
                subject = args[0]
                reply = args[2] if len(args) == (5 if frame.op == b"HMSG" else 4) else None
                if subject in hub.lost_replies:
                    with hub.lock:
                        hub.lost_replies.discard(subject)
                    continue  # the PubAck the plan lost: the publisher never hears it
                named = consumer_of(reply) if reply is not None else None
                if named is not None:
                    consumer = named[1]
                    if consumer not in hub.consumers.get(self.proxy.service, frozenset()):
                        hub.refused.append(
                            f"service {self.proxy.service!r} received a delivery of {subject!r} from consumer {consumer!r} of stream "
                            f"{named[0]!r}, which it does not declare; declare it: consumers={{{self.proxy.service!r}: [{consumer!r}, ...]}} "
                            "(a durable name: an ephemeral consumer's name changes every run)"
                        )
                        _write(self.server_writer, nak(reply))  # type: ignore[arg-type]
                        continue
                    await self._intercept("delivery", consumer, frame, subject, reply)
                    continue
            _write(self.client_writer, frame.encode())
            await self.client_writer.drain()

    async def _intercept(self, kind: str, operation: str, frame: RawFrame, subject: str, reply: str | None) -> None:
        released: asyncio.Future[None] = self.loop.create_future()
        self.proxy.hub.waiting.put(Intercepted(kind, self.proxy.service, operation, frame, self, subject, reply, released))
        await released

    def close(self) -> None:
        for writer in (self.client_writer, self.server_writer):
            if not writer.is_closing():
                writer.close()


def nak(ack_subject: str) -> bytes:
    """The frame that answers a delivery with ``-NAK``."""
    return f"PUB {ack_subject} {len(NAK)}\r\n".encode() + NAK + b"\r\n"


def _write(writer: asyncio.StreamWriter, data: bytes) -> None:
    if not writer.is_closing():
        writer.write(data)


class ServiceProxy:
    """The address one service connects to: every connection to it is that service's, and is
    passed on to the server through the hub's decisions."""

    def __init__(self, service: str, upstream: tuple[str, int], hub: Hub) -> None:
        self.service = service
        self.upstream = upstream
        self.hub = hub
        self.connections: list[Connection] = []
        self.server: asyncio.AbstractServer | None = None
        self.port = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self.opened_at = time.monotonic()

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        connection = Connection(self, (reader, writer), upstream)
        self.connections.append(connection)
        pumps = [asyncio.ensure_future(connection.pump_from_client()), asyncio.ensure_future(connection.pump_from_server())]
        self._tasks.update(pumps)
        try:
            # Either side closing ends the connection: the other side sees it closed too.
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            connection.close()
            for pump in pumps:
                pump.cancel()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for connection in self.connections:
            connection.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
