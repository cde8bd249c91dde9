"""The fault proxy's client side: one client connection, its requests read in full with h11 and
its answers written with h11, on the proxy's asyncio loop."""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import h11

__all__ = ["MAX_BODY", "MAX_HEAD", "BadRequest", "ClientConnection", "ClientGone", "Headers", "Request", "phrase"]

#: The longest request head (request line and headers) the proxy reads.
MAX_HEAD = 64 * 1024
#: The largest request or reply body the proxy holds.
MAX_BODY = 64 * 1024 * 1024

Headers = list[tuple[bytes, bytes]]


class BadRequest(Exception):
    """A request the proxy cannot read; ``status`` is what it answers, the message says why."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.status = status


class ClientGone(Exception):
    """The client closed its connection in the middle of a request."""


@dataclass
class Request:
    """A request as the client sent it, read in full."""

    method: str
    target: str
    """Path and query (an absolute-form target is cut down to them), or ``*``."""
    headers: Headers
    """Every header as sent, names as the client spelled them."""
    body: bytes
    framed: bool
    """It had a ``Content-Length`` or a chunked body (so the forwarded copy says its length)."""


def phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


class ClientConnection:
    """One client connection: `next_request` reads the next request in full, `answer` and
    `answer_json` answer it, `hold` keeps the connection open unanswered until the client leaves."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self._ended = False  # the client closed its side
        _nodelay(writer)

    async def next_request(self) -> Request | None:
        """The next request; None when the client closed the connection between requests.
        Raises `BadRequest` for one the proxy cannot read (answer it with `answer_json`, then
        close), `ClientGone` when the client left in the middle of its body."""
        connection = self._h11
        if connection.our_state is h11.DONE and connection.their_state is h11.DONE:
            connection.start_next_cycle()
        head: h11.Request | None = None
        parts: list[bytes] = []
        size = 0
        while True:
            try:
                event = connection.next_event()
            except h11.RemoteProtocolError as error:
                if self._ended and head is not None:
                    raise ClientGone from None  # the client left in the middle of its body
                if self._ended:
                    raise BadRequest("the connection ended in the middle of the request head") from None
                raise BadRequest(str(error), error.error_status_hint) from None
            if event is h11.NEED_DATA:
                data = await self._reader.read(65536)
                self._ended = not data
                connection.receive_data(data)
            elif isinstance(event, h11.Request):
                head = event
                self._check(head)
                if connection.they_are_waiting_for_100_continue:
                    self._writer.write(connection.send(h11.InformationalResponse(status_code=100, headers=[])))
            elif isinstance(event, h11.Data):
                size += len(event.data)
                if size > MAX_BODY:
                    raise BadRequest(f"the body is larger than {MAX_BODY} bytes", 413)
                parts.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                headers = [(bytes(name), bytes(value)) for name, value in head.headers.raw_items()]
                framed = any(name.lower() in (b"content-length", b"transfer-encoding") for name, _ in headers)
                return Request(head.method.decode("ascii"), _target(head.target), headers, b"".join(parts), framed)
            else:  # ConnectionClosed: the client left between requests
                return None

    @staticmethod
    def _check(head: h11.Request) -> None:
        """What h11 lets through and the proxy does not: another HTTP version, a request framed
        two ways (a smuggling risk: the upstream might read the other one), a target that is
        neither a path nor an absolute URL."""
        if head.http_version not in (b"1.0", b"1.1"):
            raise BadRequest(f"HTTP/{head.http_version.decode('latin-1')} is not HTTP/1.1 or HTTP/1.0", 505)
        names = {bytes(name) for name, _ in head.headers}
        if b"content-length" in names and b"transfer-encoding" in names:
            raise BadRequest("a request may not have both Transfer-Encoding and Content-Length")
        _target(head.target)

    def answer(
        self, status: int, reason: str, headers: Sequence[tuple[bytes, bytes]], body: bytes, *, method: str, close: bool = False
    ) -> None:
        """Answer the request just read (``method`` is its method: a HEAD answer has no body)."""
        sent = list(headers)
        if close:
            sent.append((b"connection", b"close"))
        connection = self._h11
        data = connection.send(h11.Response(status_code=status, headers=sent, reason=reason.encode("latin-1", "replace")))
        if body and method != "HEAD" and status not in (204, 304):
            data += connection.send(h11.Data(data=body))
        data += connection.send(h11.EndOfMessage())
        self._writer.write(data)

    def answer_json(self, status: int, data: Mapping[str, object], *, method: str = "", close: bool = False) -> None:
        """The proxy's own answer (an error), as JSON (its length only, to a HEAD request)."""
        body = json.dumps(data, ensure_ascii=True, separators=(",", ":")).encode("ascii")
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode("ascii"))]
        self.answer(status, phrase(status), headers, body, method=method, close=close)

    @property
    def reusable(self) -> bool:
        """Whether another request may follow on this connection (the last one was answered in
        full and neither side asked to close)."""
        return self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE

    async def drain(self) -> None:
        await self._writer.drain()

    async def hold(self) -> None:
        """Read and drop whatever comes until the client leaves (or the proxy closes)."""
        while await self._reader.read(65536):
            pass

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await self._writer.wait_closed()


def _target(target: bytes) -> str:
    text = target.decode("ascii")  # h11 lets only visible ASCII through
    if text.startswith("/") or text == "*":
        return text
    if text.lower().startswith(("http://", "https://")):  # absolute form: keep path and query
        parts = urlsplit(text)
        return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    raise BadRequest(f"the request target {text[:80]!r} is neither a path nor an absolute URL")


def _nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
