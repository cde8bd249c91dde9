"""The fault proxy: an HTTP/1.1 reverse proxy in front of one service, with its own asyncio loop
in a daemon thread, that asks a decision function what to do with each request.

How a request goes through:

1. The proxy reads the whole request from the client (head, then a ``Content-Length`` or chunked
   body), numbers it (1, 2, ... per proxy, in the order requests are read, over every client
   connection) and calls ``decide`` with a `ProxiedRequest`.
2. It does what the `ProxyAction` says. Forwarding means: send the request to the upstream (on an
   upstream connection of this client connection, kept alive while the upstream allows it),
   read the upstream's whole reply, and answer the client with it, framed with a
   ``Content-Length`` (a chunked reply is de-chunked and its trailers dropped).
   ``Stall`` forwards nothing and answers nothing: the connection stays open (whatever else
   comes on it is dropped) until the client closes it or the proxy closes.
   ``DropResponse(then=...)`` runs ``then`` on a worker thread once the whole reply is read, and
   closes the client connection (and its upstream connection: ``then`` may have restarted the
   upstream elsewhere) only when ``then`` returned.
   ``Duplicate(lag=...)`` with a lag answers the client with the first reply at once and sends the
   copy ``lag`` seconds later on an upstream connection of its own (to the target of that time).
3. It appends a `ProxyRecord` *before* the client sees anything of the outcome, so once a client
   has its reply (or its error), the record of that request is there to read. A lagged copy gets
   a second record (same ``seq``) when it settles.
4. From the moment ``decide`` is called until the proxy is done with it (its reply read and
   passed on, a ``then`` returned, a lagged copy settled) the request counts as *in flight*
   (`FaultProxy.in_flight`); `FaultProxy.settle` waits until nothing is. A client that leaves does
   not end that: the request goes on to the upstream all the same. A stalled request is not in
   flight once recorded: nothing of it will ever reach the upstream.

The proxy never resends a request on its own: one that fails on the way to the upstream is
answered 502 (504 when the upstream does not answer within ``timeout``), whatever the action
said, so a real failure never passes for an injected one. The proxy does not stream: it holds a
reply until it ends (what ``DropResponse`` needs anyway), so it does not suit server-sent events,
long polls or upgrades (``101`` is answered 502).
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import math
import re
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import ClassVar, NamedTuple
from urllib.parse import urlsplit

from ..errors import OptionError
from ..systems._protocol import DELIVERY_HEADER

__all__ = [
    "Decide",
    "Delay",
    "DropRequest",
    "DropResponse",
    "Duplicate",
    "FaultProxy",
    "Pass",
    "ProxiedRequest",
    "ProxyAction",
    "ProxyRecord",
    "Stall",
    "scripted",
    "scripted_by_delivery",
]

#: The longest request or reply head (request or status line and headers) the proxy reads.
MAX_HEAD = 64 * 1024
#: The largest request or reply body the proxy holds.
MAX_BODY = 64 * 1024 * 1024
#: Seconds the upstream may take to accept a connection and send its whole reply.
DEFAULT_TIMEOUT = 30.0


# -- actions ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProxyAction:
    """What the proxy does with one request; each subclass is one action. Actions are values: they
    compare, hash and print (``"delay seconds=0.5"``)."""

    kind: ClassVar[str] = ""

    def __str__(self) -> str:
        return self.kind


@dataclass(frozen=True)
class Pass(ProxyAction):
    """Forward the request and answer with the upstream's reply."""

    kind: ClassVar[str] = "pass"


@dataclass(frozen=True)
class Delay(ProxyAction):
    """Hold the request ``seconds`` real seconds on the proxy's loop, then forward it. The hold
    goes on if the client gives up meanwhile: the request lands late all the same, after whatever
    the caller did next (the reply then has no one to go to)."""

    seconds: float

    kind: ClassVar[str] = "delay"

    def __post_init__(self) -> None:
        _check_seconds(self.seconds, "Delay(seconds=...)")

    def __str__(self) -> str:
        return f"delay seconds={_seconds_text(self.seconds)}"


@dataclass(frozen=True)
class DropRequest(ProxyAction):
    """Never forward the request; close the client connection without a reply. The caller sees
    the connection end (``httpx.RemoteProtocolError``) and nothing happened upstream."""

    kind: ClassVar[str] = "drop-request"


@dataclass(frozen=True)
class Stall(ProxyAction):
    """Never forward the request and never answer it: keep the client connection open (reading
    and dropping whatever else comes on it) until the client closes it or the proxy closes. The
    caller sees its own timeout and nothing happened upstream. Recorded at once, status None."""

    kind: ClassVar[str] = "stall"


@dataclass(frozen=True)
class DropResponse(ProxyAction):
    """Forward the request, read the upstream's whole reply (so its effect is committed), then
    close the client connection without answering: the caller sees the connection end and cannot
    tell whether the request took effect (the unknown outcome).

    ``then``, if given, runs between the two: once the whole reply is read and before the client
    connection is closed, on a worker thread (not the proxy's loop: it may block, e.g. to kill and
    restart the upstream, and may call ``proxy.retarget``), and the proxy waits for it. If it raises,
    the record's ``error`` says so; the client connection is closed without an answer all the same.
    The upstream connection of that client connection is closed too, never used again. ``then``
    does not run when the upstream fails (the client gets 502). It takes no part in comparing,
    hashing or printing the action. Do not call ``settle`` from it: ``then`` is in flight itself."""

    then: Callable[[], object] | None = field(default=None, compare=False, repr=False)

    kind: ClassVar[str] = "drop-response"


@dataclass(frozen=True)
class Duplicate(ProxyAction):
    """Forward the request twice, one after the other on the same upstream connection (a new one
    if the upstream closed it after the first reply), then answer with the reply to the first.

    The first reply because that is what a duplicate looks like to the caller on a real network:
    its request is answered by the delivery it made, and the copy's reply goes to no one. The
    client is answered only once the copy's reply is in, so when it has its answer both deliveries
    have taken effect (or been refused) upstream. The copy is sent byte for byte as the original,
    ``Saga-Verify-Delivery`` included. If the first delivery fails the client gets 502 and no
    copy is sent.

    With ``lag`` (real seconds, default 0: all of the above) the copy comes late instead: the
    proxy forwards the original and answers the client with its reply at once, then ``lag``
    seconds later sends the copy on a new upstream connection of its own, to the proxy's target
    of that time (byte for byte the original unless ``retarget`` changed the ``Host``), reads its
    reply and drops it. The request's record is appended when the client is answered (its
    ``copy_status`` None); when the copy settles a second record with the same ``seq`` and action
    is appended, its ``status`` None and its ``copy_status`` the copy's status (or its ``error``
    why the copy failed). The copy is in flight until then (`FaultProxy.settle` waits for it);
    closing the proxy abandons it, like a delayed request."""

    lag: float = 0.0

    kind: ClassVar[str] = "duplicate"

    def __post_init__(self) -> None:
        _check_seconds(self.lag, "Duplicate(lag=...)")

    def __str__(self) -> str:
        return "duplicate" if self.lag == 0 else f"duplicate lag={_seconds_text(self.lag)}"


def _check_seconds(value: object, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise OptionError(f"{what} must be a finite number of seconds >= 0, got {value!r}")


def _seconds_text(seconds: float) -> str:
    return str(int(seconds) if float(seconds).is_integer() else seconds)


_ACTIONS = (Pass, Delay, DropRequest, DropResponse, Duplicate, Stall)
_PASS = Pass()


# -- what decide sees and what the proxy records -----------------------------------------------------
@dataclass(frozen=True)
class ProxiedRequest:
    """A request as the client sent it, for ``decide``."""

    seq: int
    """Its number on this proxy: 1 for the first request the proxy read, over all connections."""
    method: str
    path: str
    """The request target: path and query (``"/charges?dry=1"``)."""
    headers: tuple[tuple[str, str], ...]
    """Every header as sent, names as the client spelled them (values read as latin-1)."""
    body: bytes
    delivery: int | None
    """The ``Saga-Verify-Delivery`` header as a number (the harness's trace entry of this
    delivery), or None if it is absent or not a number."""

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (any case), or None."""
        wanted = name.lower()
        return next((value for key, value in self.headers if key.lower() == wanted), None)


class ProxyRecord(NamedTuple):
    """What the proxy did with one request that reached ``decide``; or, for a `Duplicate` with a
    ``lag``, with its copy: a second record with the request's ``seq`` and action, ``status``
    None and the copy's outcome in ``copy_status`` (or ``error``)."""

    seq: int
    method: str
    path: str
    action: ProxyAction | None
    """What ``decide`` answered; None when it raised or answered something else (the client got
    500)."""
    status: int | None
    """The upstream's status (for a duplicate: of the first delivery); None when nothing was
    forwarded (a stall too), the upstream failed, or on the second record of a lagged copy."""
    copy_status: int | None = None
    """For a duplicate: the upstream's status for the copy. Without a lag it is on the request's
    record; with one, the request's record has None and the copy's own record has it."""
    error: str | None = None
    """Why it did not go as the action says (upstream unreachable, copy lost, decide raised, a
    ``DropResponse``'s ``then`` raised)."""


#: The decision function: called once per request, on the proxy's thread.
Decide = Callable[[ProxiedRequest], ProxyAction]


def _check_table(actions: Mapping[int, ProxyAction], default: ProxyAction, what: str) -> dict[int, ProxyAction]:
    table: dict[int, ProxyAction] = {}
    for key, action in actions.items():
        if isinstance(key, bool) or not isinstance(key, int) or key < 0:
            raise OptionError(f"{what}: keys must be whole numbers, got {key!r}")
        if not isinstance(action, _ACTIONS):
            raise OptionError(f"{what}: {key} maps to {action!r}, which is not a proxy action")
        table[key] = action
    if not isinstance(default, _ACTIONS):
        raise OptionError(f"{what}: default {default!r} is not a proxy action")
    return table


def scripted(actions: Mapping[int, ProxyAction], *, default: ProxyAction = _PASS) -> Decide:
    """A ``decide`` that looks the request's number on the proxy up in ``actions``
    (``scripted({1: DropResponse(), 3: Duplicate()})``), else answers ``default``. The table is
    copied: the function is pure, and safe on any thread."""
    table = _check_table(actions, default, "scripted")
    if any(key < 1 for key in table):
        raise OptionError("scripted: requests are numbered from 1")

    def decide(request: ProxiedRequest) -> ProxyAction:
        return table.get(request.seq, default)

    return decide


def scripted_by_delivery(actions: Mapping[int, ProxyAction], *, default: ProxyAction = _PASS) -> Decide:
    """A ``decide`` that looks the request's ``Saga-Verify-Delivery`` header up in ``actions``,
    else (no header, or a number not in the table) answers ``default``. Each attempt the harness
    makes is another delivery, so a retry is not hit again. Pure, like `scripted`."""
    table = _check_table(actions, default, "scripted_by_delivery")

    def decide(request: ProxiedRequest) -> ProxyAction:
        return default if request.delivery is None else table.get(request.delivery, default)

    return decide


# -- HTTP/1.1 framing --------------------------------------------------------------------------------
_TOKEN = re.compile(rb"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_DIGITS = re.compile(r"^[0-9]{1,18}$")
_HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding", b"upgrade"}
)
_Headers = list[tuple[bytes, bytes]]


class _BadMessage(Exception):
    """A request (or reply) the proxy cannot read; the message says why."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.status = status


class _ClientGone(Exception):
    """The client closed its connection in the middle of a request."""


@dataclass
class _Request:
    method: str
    target: str
    headers: _Headers
    body: bytes
    keep_alive: bool
    framed: bool  # it had a Content-Length or a chunked body (so the forwarded copy says its length)


@dataclass
class _Reply:
    status: int
    reason: str
    headers: _Headers
    body: bytes
    keep_alive: bool


def _values(headers: _Headers, name: bytes) -> list[bytes]:
    return [value for key, value in headers if key.lower() == name]


def _tokens(headers: _Headers, name: bytes) -> set[bytes]:
    return {t.strip().lower() for value in _values(headers, name) for t in value.split(b",") if t.strip()}


def _parse_headers(lines: list[bytes], bad: type[_BadMessage]) -> _Headers:
    headers: _Headers = []
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            raise bad("folded header lines (obsolete line folding) are not accepted")
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.match(name):
            raise bad(f"malformed header line {line[:80]!r}")
        headers.append((name, value.strip(b" \t")))
    return headers


async def _read_head(reader: asyncio.StreamReader, bad: type[_BadMessage], what: str) -> bytes | None:
    """The head up to its blank line (leading empty lines skipped); None if the connection ended
    before anything but empty lines came."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise bad(f"the connection ended in the middle of the {what} head") from None
    except asyncio.LimitOverrunError:
        raise bad(f"the {what} head is larger than {MAX_HEAD // 1024} KiB", 431) from None
    head = head.lstrip(b"\r\n")
    if not head:  # only empty lines: read on
        return await _read_head(reader, bad, what)
    return head[:-4]


def _content_length(headers: _Headers, bad: type[_BadMessage]) -> int | None:
    values = {v.strip() for value in _values(headers, b"content-length") for v in value.split(b",")}
    if not values:
        return None
    if len(values) > 1:
        raise bad(f"conflicting Content-Length values {sorted(values)}")
    (text,) = values
    if not text.isdigit():
        raise bad(f"Content-Length {text[:40]!r} is not a number")
    length = int(text)
    if length > MAX_BODY:
        raise bad(f"the body ({length} bytes) is larger than {MAX_BODY} bytes", 413)
    return length


async def _read_chunked(reader: asyncio.StreamReader, bad: type[_BadMessage]) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        line = await reader.readuntil(b"\r\n")
        size_text = line[:-2].split(b";", 1)[0].strip()
        if not size_text or not all(c in b"0123456789abcdefABCDEF" for c in size_text):
            raise bad(f"malformed chunk size {line[:40]!r}")
        size = int(size_text, 16)
        if size == 0:
            break
        total += size
        if total > MAX_BODY:
            raise bad(f"the chunked body is larger than {MAX_BODY} bytes", 413)
        parts.append(await reader.readexactly(size))
        if await reader.readexactly(2) != b"\r\n":
            raise bad("a chunk does not end with CRLF")
    while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers: dropped
        pass
    return b"".join(parts)


async def _read_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> _Request | None:
    """The next request on a client connection; None when the client closed it between requests."""
    head = await _read_head(reader, _BadMessage, "request")
    if head is None:
        return None
    request_line, *lines = head.split(b"\r\n")
    parts = request_line.split(b" ")
    if len(parts) != 3:
        raise _BadMessage(f"the request line {request_line[:80]!r} is not 'METHOD TARGET HTTP/1.1'")
    method, target, version = parts
    if not _TOKEN.match(method):
        raise _BadMessage(f"{method[:40]!r} is not a method")
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise _BadMessage(f"{version[:40]!r} is not HTTP/1.1 or HTTP/1.0", 505 if version.startswith(b"HTTP/") else 400)
    target_text = _target(target)
    headers = _parse_headers(lines, _BadMessage)
    codings = [
        t for value in _values(headers, b"transfer-encoding") for t in value.lower().replace(b" ", b"").split(b",")
    ]
    length = _content_length(headers, _BadMessage)
    if codings and length is not None:
        raise _BadMessage("a request may not have both Transfer-Encoding and Content-Length")
    if codings and codings != [b"chunked"]:
        raise _BadMessage(
            f"Transfer-Encoding {b', '.join(codings).decode('latin-1')!r} is not supported (only chunked)", 501
        )
    if (codings or length) and b"100-continue" in _tokens(headers, b"expect"):
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    try:
        if codings:
            body = await _read_chunked(reader, _BadMessage)
        else:
            body = await reader.readexactly(length) if length else b""
    except (asyncio.IncompleteReadError, ConnectionError) as exc:
        raise _ClientGone from exc
    except asyncio.LimitOverrunError:
        raise _BadMessage("a chunk size line is too long") from None
    connection = _tokens(headers, b"connection")
    keep_alive = b"close" not in connection if version == b"HTTP/1.1" else b"keep-alive" in connection
    return _Request(method.decode("ascii"), target_text, headers, body, keep_alive, bool(codings) or length is not None)


def _target(target: bytes) -> str:
    try:
        text = target.decode("ascii")
    except UnicodeDecodeError:
        raise _BadMessage("the request target is not ASCII") from None
    if text.startswith("/") or text == "*":
        return text
    if text.lower().startswith(("http://", "https://")):  # absolute form: keep path and query
        parts = urlsplit(text)
        return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    raise _BadMessage(f"the request target {text[:80]!r} is neither a path nor an absolute URL")


class _BadReply(_BadMessage):
    pass


async def _read_reply(reader: asyncio.StreamReader, method: str) -> _Reply:
    while True:
        head = await _read_head(reader, _BadReply, "reply")
        if head is None:
            raise _BadReply("the upstream closed the connection without replying")
        status_line, *lines = head.split(b"\r\n")
        version, _, rest = status_line.partition(b" ")
        code, _, reason = rest.partition(b" ")
        if version not in (b"HTTP/1.1", b"HTTP/1.0") or len(code) != 3 or not code.isdigit():
            raise _BadReply(f"malformed status line {status_line[:80]!r}")
        status = int(code)
        headers = _parse_headers(lines, _BadReply)
        if status == 101:
            raise _BadReply("the upstream switched protocols (101), which the proxy does not support")
        if status >= 200:
            break  # 1xx before the final reply are read and dropped
    connection = _tokens(headers, b"connection")
    keep_alive = b"close" not in connection if version == b"HTTP/1.1" else b"keep-alive" in connection
    codings = [
        t for value in _values(headers, b"transfer-encoding") for t in value.lower().replace(b" ", b"").split(b",")
    ]
    if method == "HEAD" or status in (204, 304):
        body = b""
    elif codings and codings[-1] == b"chunked":
        body = await _read_chunked(reader, _BadReply)
    elif not codings and (length := _content_length(headers, _BadReply)) is not None:
        body = await reader.readexactly(length)
    else:  # delimited by the end of the connection
        body = await _read_to_end(reader)
        keep_alive = False
    return _Reply(status, reason.decode("latin-1"), headers, body, keep_alive)


async def _read_to_end(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    total = 0
    while chunk := await reader.read(65536):
        total += len(chunk)
        if total > MAX_BODY:
            raise _BadReply(f"the reply body is larger than {MAX_BODY} bytes")
        parts.append(chunk)
    return b"".join(parts)


def _end_to_end(headers: _Headers, drop: frozenset[bytes]) -> _Headers:
    """The headers a proxy passes on: no hop-by-hop ones (also those Connection names), none of ``drop``."""
    named = _tokens(headers, b"connection")
    return [
        (k, v) for k, v in headers if (low := k.lower()) not in _HOP_BY_HOP and low not in named and low not in drop
    ]


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


def _nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


# -- the upstream ----------------------------------------------------------------------------------------
class _Target(NamedTuple):
    url: str
    host: str
    port: int
    authority: bytes


def _parse_upstream(url: str) -> _Target:
    if not isinstance(url, str):
        raise OptionError(f"the upstream must be a URL like 'http://127.0.0.1:8000', got {url!r}")
    parts = urlsplit(url.strip())
    if parts.scheme != "http":
        raise OptionError(f"the upstream must be a plain http:// URL like 'http://127.0.0.1:8000', got {url!r}")
    try:
        port = parts.port or 80
    except ValueError:
        raise OptionError(f"the upstream {url!r} has no valid port") from None
    if not parts.hostname or parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise OptionError(f"the upstream must be only scheme, host and port, like 'http://127.0.0.1:8000', got {url!r}")
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    return _Target(f"http://{shown}:{port}", host, port, f"{shown}:{port}".encode("idna"))


class _Stalled:
    """What `FaultProxy._handle` answers for a stalled request."""


_STALL = _Stalled()


class _UpstreamError(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class _Link:
    """The upstream connection of one client connection."""

    __slots__ = ("reader", "target", "writer")

    def __init__(self) -> None:
        self.target: _Target | None = None
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    def usable(self, target: _Target) -> bool:
        return (
            self.writer is not None
            and self.reader is not None
            and self.target == target
            and not self.reader.at_eof()
            and not self.writer.is_closing()
        )

    def close(self) -> asyncio.StreamWriter | None:
        writer = self.writer
        self.reader = self.writer = self.target = None
        if writer is not None:
            writer.close()
        return writer


# -- the proxy --------------------------------------------------------------------------------------------
class FaultProxy:
    """A reverse proxy for HTTP/1.1 in front of one upstream service, injecting the faults
    ``decide`` picks, request by request.

    It serves on ``host``:``port`` (port 0: a free one) from its own asyncio loop in a daemon
    thread: `start` returns once it listens, `close` (idempotent) stops it and closes every client
    and upstream connection; ``with FaultProxy(...) as proxy`` does both. ``retarget`` points it at
    another upstream (a restarted service on a new port); connections to the old one are dropped
    as they are next used. ``timeout`` bounds each upstream exchange (connect, send, whole reply).
    `settle` waits (from another thread) until no request is in flight: none being decided, held
    by a ``Delay``, awaiting its upstream reply, in a ``DropResponse``'s ``then``, and no lagged
    copy pending; `in_flight` counts them.

    ``decide`` (default: pass everything) is called once per request **on the proxy's thread**,
    one call at a time, and blocks the proxy while it runs: keep it quick and never wait in it.
    Anything it shares with the test's thread needs a lock (or to be immutable, as the tables of
    `scripted` and `scripted_by_delivery` are). It may be replaced at any time by assigning
    ``proxy.decide``. If it raises or answers something that is not an action, the client gets
    500 and the record's action is None.
    """

    def __init__(
        self,
        upstream: str,
        decide: Decide | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> None:
        self._target = _parse_upstream(upstream)
        self.decide: Decide = decide if decide is not None else _pass_all
        self.host = host
        self._requested_port = port
        self.timeout = timeout
        self._port: int | None = None
        self._records: list[ProxyRecord] = []
        self._records_lock = threading.Lock()
        self._seq = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._clients: set[asyncio.Task[None]] = set()
        self._copies: set[asyncio.Task[None]] = set()
        self._busy = 0  # requests and lagged copies in flight; guarded by _idle
        self._idle = threading.Condition(threading.Lock())

    # -- what others read ------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The port it listens on (known once started)."""
        if self._port is None:
            raise RuntimeError("the proxy is not listening yet: call start() first")
        return self._port

    @property
    def url(self) -> str:
        """``http://host:port``: where clients send their requests."""
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{shown}:{self.port}"

    @property
    def upstream(self) -> str:
        """The upstream's URL, as normalised (``http://host:port``)."""
        return self._target.url

    @property
    def records(self) -> list[ProxyRecord]:
        """What it did, one record per request that reached ``decide`` (and one more per lagged
        duplicate's copy), in the order each was settled (a delayed request is recorded after those
        that overtook it). A copy."""
        with self._records_lock:
            return list(self._records)

    @property
    def in_flight(self) -> int:
        """How many requests (and lagged copies) are in flight now: being decided, held by a
        ``Delay``, awaiting their upstream reply, in a ``then``, or a copy waiting out its lag."""
        with self._idle:
            return self._busy

    def settle(self, timeout: float) -> bool:
        """Block until nothing is in flight (see `in_flight`), at most ``timeout`` seconds; True
        if it settled. Call it from another thread than the proxy's (not from ``decide``, nor from
        a ``then``, which is in flight itself). A request counts from the moment the proxy read it
        in full, so one a client is still sending is not waited for; a stalled one is not either.
        Once a proxy is closed nothing is in flight."""
        _check_seconds(timeout, "settle(timeout=...)")
        if self._thread is not None and self._thread is threading.current_thread():
            raise RuntimeError("settle() was called from the proxy's own thread (from decide?); call it from another")
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, timeout)

    def retarget(self, url: str) -> None:
        """Send the next requests to ``url``; safe from any thread."""
        self._target = _parse_upstream(url)

    # -- start and stop ---------------------------------------------------------------------------------
    def start(self) -> FaultProxy:
        """Start serving; returns once it listens. Raises the ``OSError`` of a port it cannot bind."""
        with self._lock:
            if self._closed:
                raise RuntimeError("this proxy was closed; make a new one")
            if self._thread is not None:
                raise RuntimeError("this proxy was started already")
            self._thread = threading.Thread(target=self._run, name="saga-verify-proxy", daemon=True)
            self._thread.start()
        self._ready.wait()
        if self._start_error is not None:
            self._thread.join()
            with self._lock:
                self._closed = True
            raise self._start_error
        return self

    def close(self) -> None:
        """Stop listening, close every client and upstream connection (requests under way,
        delayed ones and lagged copies too, are abandoned) and end the thread. Idempotent. A
        ``then`` that is running is waited for (the proxy's worker threads end with it)."""
        with self._lock:
            thread = self._thread
            self._closed = True
        if thread is None:
            return
        if thread is threading.current_thread():
            raise RuntimeError("close() was called from the proxy's own thread (from decide?); call it from another")
        self._ready.wait()  # a close racing start() waits until the loop can be told to stop
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed already
                loop.call_soon_threadsafe(stop.set)
        thread.join()

    def __enter__(self) -> FaultProxy:
        if self._thread is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = f"{self.url}" if self._port is not None else "not listening"
        return f"<FaultProxy {where} -> {self.upstream}>"

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to start() if it failed before it listened
            if not self._ready.is_set():
                self._start_error = exc
                self._ready.set()
            else:
                raise

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            server = await asyncio.start_server(self._accept, self.host, self._requested_port, limit=MAX_HEAD)
        except OSError as exc:
            self._start_error = exc
            self._ready.set()
            return
        self._port = int(server.sockets[0].getsockname()[1])
        if self._thread is not None:
            self._thread.name = f"saga-verify-proxy-{self._port}"
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            server.close()
            # The clients first: a client task may still start a lagged copy until it ends.
            for tasks in (self._clients, self._copies):
                pending = list(tasks)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
            await server.wait_closed()

    # -- one client connection ------------------------------------------------------------------------
    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A task of our own rather than a coroutine for asyncio to wrap: `close` cancels these, and
        # asyncio (3.11) reports a cancelled task of its own making as an unhandled error.
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer))
        self._clients.add(task)
        task.add_done_callback(self._clients.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _nodelay(writer)
        link = _Link()
        try:
            while True:
                try:
                    request = await _read_request(reader, writer)
                except _BadMessage as bad:
                    _answer_json(
                        writer, bad.status, {"error": _phrase(bad.status).lower(), "reason": str(bad)}, close=True
                    )
                    await writer.drain()
                    return
                if request is None:
                    return
                with self._working():
                    outcome = await self._handle(request, writer, link)
                if outcome is _STALL:
                    while await reader.read(65536):  # until the client leaves (or the proxy closes)
                        pass
                    return
                if not outcome:
                    return
        except (_ClientGone, ConnectionError, asyncio.IncompleteReadError):
            return  # the client went away; a request it had sent in full was still handled
        except Exception:
            # A bug in handling one connection must not take the proxy down: end that connection.
            with contextlib.suppress(Exception):
                _answer_json(
                    writer, 500, {"error": "proxy error", "reason": "the proxy failed on this request"}, close=True
                )
            return
        finally:
            for closing in (link.close(), writer):
                if closing is not None:
                    closing.close()
                    with contextlib.suppress(Exception, asyncio.CancelledError):
                        await closing.wait_closed()

    def _decide(self, seq: int, request: _Request) -> ProxyAction | str:
        """What ``decide`` answers, or why it failed."""
        try:
            action = self.decide(_proxied(seq, request))
        except Exception as exc:  # reported to the client and in the record
            return f"decide raised {type(exc).__name__}: {exc}"
        if not isinstance(action, _ACTIONS):
            return f"decide answered {action!r}, which is not a proxy action"
        return action

    @contextlib.contextmanager
    def _working(self) -> Iterator[None]:
        """Count one request (or copy) in flight while the block runs."""
        self._begin()
        try:
            yield
        finally:
            self._end()

    def _begin(self) -> None:
        with self._idle:
            self._busy += 1

    def _end(self, _: object = None) -> None:
        with self._idle:
            self._busy -= 1
            if self._busy == 0:
                self._idle.notify_all()

    async def _handle(self, request: _Request, writer: asyncio.StreamWriter, link: _Link) -> bool | _Stalled:
        """Do what ``decide`` says with one request; False when the client connection must end,
        ``_STALL`` when it must be held open, unanswered, until the client leaves."""
        self._seq += 1
        seq = self._seq
        keep_alive = request.keep_alive
        action = self._decide(seq, request)
        if isinstance(action, str):
            self._record(ProxyRecord(seq, request.method, request.target, None, None, error=action))
            data = {"error": "decide failed", "reason": action}
            _answer_json(writer, 500, data, close=not keep_alive, method=request.method)
            await writer.drain()
            return keep_alive

        def record(status: int | None, copy_status: int | None = None, error: str | None = None) -> None:
            self._record(ProxyRecord(seq, request.method, request.target, action, status, copy_status, error))

        if isinstance(action, Delay):
            await asyncio.sleep(action.seconds)
        if isinstance(action, DropRequest):
            record(None)
            return False
        if isinstance(action, Stall):
            record(None)
            return _STALL
        target = self._target
        raw = _forwarded(request, target)
        try:
            reply = await self._exchange(link, target, raw, request.method)
        except _UpstreamError as exc:
            record(None, error=f"{exc.status}: {exc}")
            data = {"error": _phrase(exc.status).lower(), "upstream": target.url, "reason": str(exc)}
            _answer_json(writer, exc.status, data, close=not keep_alive, method=request.method)
            await writer.drain()
            return keep_alive
        if isinstance(action, DropResponse):
            error = None
            if action.then is not None:
                try:
                    await asyncio.get_running_loop().run_in_executor(None, action.then)
                except asyncio.CancelledError:  # the proxy is closing
                    raise
                except BaseException as exc:  # reported in the record; the client is dropped all the same
                    error = f"then raised {type(exc).__name__}: {exc}"
                link.close()  # then may have restarted the upstream: never reuse this connection
            record(reply.status, error=error)
            return False
        if isinstance(action, Duplicate) and action.lag > 0:
            record(reply.status)
            self._begin()  # before the client has its answer, so settle() waits for the copy
            task = asyncio.get_running_loop().create_task(self._late_copy(seq, request, action))
            self._copies.add(task)
            task.add_done_callback(self._copies.discard)
            task.add_done_callback(self._end)  # also if cancelled before it ever ran
        elif isinstance(action, Duplicate):
            try:
                copy = await self._exchange(link, target, raw, request.method)
            except _UpstreamError as exc:
                record(reply.status, error=f"the copy failed: {exc.status}: {exc}")
            else:
                record(reply.status, copy.status)
        else:
            record(reply.status)
        _answer(
            writer, reply.status, reply.reason, _reply_headers(reply, request.method), reply.body, close=not keep_alive
        )
        await writer.drain()
        return keep_alive

    async def _late_copy(self, seq: int, request: _Request, action: Duplicate) -> None:
        """The copy of a lagged duplicate: ``action.lag`` seconds on, on a connection of its own."""
        await asyncio.sleep(action.lag)
        target = self._target
        link = _Link()
        try:
            copy = await self._exchange(link, target, _forwarded(request, target), request.method)
        except _UpstreamError as exc:
            error: str | None = f"the copy failed: {exc.status}: {exc}"
            copy_status = None
        else:
            error, copy_status = None, copy.status
        finally:
            writer = link.close()
            if writer is not None:
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
        self._record(ProxyRecord(seq, request.method, request.target, action, None, copy_status, error))

    async def _exchange(self, link: _Link, target: _Target, raw: bytes, method: str) -> _Reply:
        """Send one request upstream on ``link`` and read the whole reply."""
        try:
            async with asyncio.timeout(self.timeout):
                if not link.usable(target):
                    link.close()
                    try:
                        reader, writer = await asyncio.open_connection(target.host, target.port, limit=MAX_HEAD)
                    except OSError as exc:
                        raise _UpstreamError(502, f"cannot connect to {target.url}: {exc.strerror or exc}") from exc
                    _nodelay(writer)
                    link.reader, link.writer, link.target = reader, writer, target
                assert link.reader is not None
                assert link.writer is not None
                link.writer.write(raw)
                await link.writer.drain()
                reply = await _read_reply(link.reader, method)
        except _UpstreamError:
            raise
        except TimeoutError:
            link.close()
            raise _UpstreamError(504, f"{target.url} did not answer within {self.timeout:g} s") from None
        except _BadReply as exc:
            link.close()
            raise _UpstreamError(502, f"{target.url} sent a reply the proxy cannot read: {exc}") from None
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            link.close()
            raise _UpstreamError(
                502, f"the connection to {target.url} broke before its reply ended ({type(exc).__name__})"
            ) from None
        if not reply.keep_alive:
            link.close()
        return reply

    def _record(self, record: ProxyRecord) -> None:
        with self._records_lock:
            self._records.append(record)


def _answer(
    writer: asyncio.StreamWriter, status: int, reason: str, headers: _Headers, body: bytes, *, close: bool
) -> None:
    lines = [f"HTTP/1.1 {status} {reason}".encode("latin-1"), *(name + b": " + value for name, value in headers)]
    if close:
        lines.append(b"connection: close")
    writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)


def _answer_json(
    writer: asyncio.StreamWriter, status: int, data: Mapping[str, object], *, close: bool, method: str = ""
) -> None:
    """The proxy's own answer (an error), as JSON (its length only, to a HEAD request)."""
    body = json.dumps(data, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode("ascii"))]
    _answer(writer, status, _phrase(status), headers, b"" if method == "HEAD" else body, close=close)


def _reply_headers(reply: _Reply, method: str) -> _Headers:
    """The upstream's end-to-end headers, with the length of the body as the client gets it (a
    reply to HEAD, and a 304, keep the length the upstream announced; a 204 has none)."""
    if method == "HEAD" or reply.status == 304:
        return _end_to_end(reply.headers, frozenset())
    headers = _end_to_end(reply.headers, frozenset({b"content-length"}))
    if reply.status != 204:
        headers.append((b"content-length", str(len(reply.body)).encode("ascii")))
    return headers


def _pass_all(request: ProxiedRequest) -> ProxyAction:
    return _PASS


def _proxied(seq: int, request: _Request) -> ProxiedRequest:
    headers = tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers)
    delivery_name = DELIVERY_HEADER.lower()
    delivery_text = next((v for k, v in headers if k.lower() == delivery_name), None)
    delivery = int(delivery_text) if delivery_text is not None and _DIGITS.match(delivery_text.strip()) else None
    return ProxiedRequest(seq, request.method, request.target, headers, request.body, delivery)


def _forwarded(request: _Request, target: _Target) -> bytes:
    """The request as the upstream gets it: its Host, end-to-end headers, a Content-Length body."""
    lines = [f"{request.method} {request.target} HTTP/1.1".encode("ascii"), b"host: " + target.authority]
    lines += [
        k + b": " + v for k, v in _end_to_end(request.headers, frozenset({b"host", b"content-length", b"expect"}))
    ]
    if request.framed or request.body:
        lines.append(b"content-length: " + str(len(request.body)).encode("ascii"))
    return b"\r\n".join(lines) + b"\r\n\r\n" + request.body
