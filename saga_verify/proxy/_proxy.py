"""The fault proxy: an HTTP/1.1 reverse proxy in front of one service, with its own asyncio loop
in a daemon thread, that asks a decision function what to do with each request.

How a request goes through:

1. The proxy reads the whole request from the client with h11 (head, then a ``Content-Length`` or
   chunked body; `_client_side`), numbers it (1, 2, ... per proxy, in the order requests are read,
   over every client connection) and calls ``decide`` with a `ProxiedRequest`.
2. It does what the `ProxyAction` says. Forwarding means: send the request to the upstream with
   httpx (on an upstream connection of this client connection, kept alive while the upstream
   allows it; `_upstream`), read the upstream's whole reply, and answer the client with it,
   framed with a ``Content-Length`` (a chunked reply is de-chunked and its trailers dropped).
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
import threading
from collections.abc import Iterator

from ._actions import (
    ACTIONS,
    Decide,
    Delay,
    DropRequest,
    DropResponse,
    Duplicate,
    ProxiedRequest,
    ProxyAction,
    ProxyRecord,
    Stall,
    check_seconds,
    pass_all,
    proxied,
)
from ._client_side import MAX_HEAD, BadRequest, ClientConnection, ClientGone, Headers, Request, phrase
from ._upstream import Reply, Upstream, UpstreamError, end_to_end, parse_upstream

__all__ = ["DEFAULT_TIMEOUT", "FaultProxy"]

#: Seconds the upstream may take to accept a connection and send its whole reply.
DEFAULT_TIMEOUT = 30.0


class _Stalled:
    """What `FaultProxy._handle` answers for a stalled request."""


_STALL = _Stalled()


# -- the proxy --------------------------------------------------------------------------------------------
class FaultProxy:
    """A reverse proxy for HTTP/1.1 in front of one upstream service, injecting the faults
    ``decide`` picks, request by request.

    It serves on ``host``:``port`` (port 0: a free one) from its own asyncio loop in a daemon
    thread: `start` returns once it listens, `close` (idempotent) stops it and closes every client
    and upstream connection; ``with FaultProxy(...) as proxy`` does both. ``retarget`` points it at
    another upstream (a restarted service on a new port); connections to the old one are not used
    again, and close with their client connections. ``timeout`` bounds each upstream exchange (connect, send, whole reply).
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
        self._target = parse_upstream(upstream)
        self.decide: Decide = decide if decide is not None else pass_all
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
        check_seconds(timeout, "settle(timeout=...)")
        if self._thread is not None and self._thread is threading.current_thread():
            raise RuntimeError("settle() was called from the proxy's own thread (from decide?); call it from another")
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, timeout)

    def retarget(self, url: str) -> None:
        """Send the next requests to ``url``; safe from any thread."""
        self._target = parse_upstream(url)

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
        task = asyncio.get_running_loop().create_task(self._serve(ClientConnection(reader, writer)))
        self._clients.add(task)
        task.add_done_callback(self._clients.discard)

    async def _serve(self, client: ClientConnection) -> None:
        upstream = Upstream(self.timeout)
        try:
            while True:
                try:
                    request = await client.next_request()
                except BadRequest as bad:
                    client.answer_json(bad.status, {"error": phrase(bad.status).lower(), "reason": str(bad)}, close=True)
                    await client.drain()
                    return
                if request is None:
                    return
                with self._working():
                    outcome = await self._handle(request, client, upstream)
                if outcome is _STALL:
                    await client.hold()  # until the client leaves (or the proxy closes)
                    return
                if not outcome:
                    return
        except (ClientGone, ConnectionError):
            return  # the client went away; a request it had sent in full was still handled
        except Exception:
            # A bug in handling one connection must not take the proxy down: end that connection.
            with contextlib.suppress(Exception):
                client.answer_json(500, {"error": "proxy error", "reason": "the proxy failed on this request"}, close=True)
            return
        finally:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await upstream.aclose()
            await client.close()

    def _decide(self, seq: int, request: Request) -> ProxyAction | str:
        """What ``decide`` answers, or why it failed."""
        try:
            action = self.decide(_proxied(seq, request))
        except Exception as exc:  # reported to the client and in the record
            return f"decide raised {type(exc).__name__}: {exc}"
        if not isinstance(action, ACTIONS):
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

    async def _handle(self, request: Request, client: ClientConnection, upstream: Upstream) -> bool | _Stalled:
        """Do what ``decide`` says with one request; False when the client connection must end,
        ``_STALL`` when it must be held open, unanswered, until the client leaves."""
        self._seq += 1
        seq = self._seq
        method = request.method
        action = self._decide(seq, request)
        if isinstance(action, str):
            self._record(ProxyRecord(seq, method, request.target, None, None, error=action))
            client.answer_json(500, {"error": "decide failed", "reason": action}, method=method)
            await client.drain()
            return client.reusable

        def record(status: int | None, copy_status: int | None = None, error: str | None = None) -> None:
            self._record(ProxyRecord(seq, method, request.target, action, status, copy_status, error))

        if isinstance(action, Delay):
            problem = await _hold(action)
            if problem is not None:  # nothing forwarded: the client gets 500, as when decide fails
                record(None, error=problem)
                client.answer_json(500, {"error": "delay failed", "reason": problem}, method=method)
                await client.drain()
                return client.reusable
        if isinstance(action, DropRequest):
            record(None)
            return False
        if isinstance(action, Stall):
            record(None)
            return _STALL
        target = self._target
        try:
            reply = await upstream.exchange(target, request)
        except UpstreamError as exc:
            record(None, error=f"{exc.status}: {exc}")
            data = {"error": phrase(exc.status).lower(), "upstream": target.url, "reason": str(exc)}
            client.answer_json(exc.status, data, method=method)
            await client.drain()
            return client.reusable
        if isinstance(action, DropResponse):
            error = None
            if action.then is not None:
                try:
                    await asyncio.get_running_loop().run_in_executor(None, action.then)
                except asyncio.CancelledError:  # the proxy is closing
                    raise
                except BaseException as exc:  # reported in the record; the client is dropped all the same
                    error = f"then raised {type(exc).__name__}: {exc}"
                # then may have restarted the upstream: never reuse this connection's upstream ones
                # (they close with it, below in _serve).
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
                copy = await upstream.exchange(target, request)
            except UpstreamError as exc:
                record(reply.status, error=f"the copy failed: {exc.status}: {exc}")
            else:
                record(reply.status, copy.status)
        else:
            record(reply.status)
        client.answer(reply.status, reply.reason, _reply_headers(reply, method), reply.body, method=method)
        await client.drain()
        return client.reusable

    async def _late_copy(self, seq: int, request: Request, action: Duplicate) -> None:
        """The copy of a lagged duplicate: ``action.lag`` seconds on, on a connection of its own."""
        await asyncio.sleep(action.lag)
        upstream = Upstream(self.timeout)
        try:
            copy = await upstream.exchange(self._target, request)
        except UpstreamError as exc:
            error: str | None = f"the copy failed: {exc.status}: {exc}"
            copy_status = None
        else:
            error, copy_status = None, copy.status
        finally:
            with contextlib.suppress(Exception):
                await upstream.aclose()
        self._record(ProxyRecord(seq, request.method, request.target, action, None, copy_status, error))

    def _record(self, record: ProxyRecord) -> None:
        with self._records_lock:
            self._records.append(record)


async def _hold(delay: Delay) -> str | None:
    """Wait out a `Delay`: its seconds, or until its ``until`` is true (its seconds at most);
    why not, if ``until`` raised."""
    if delay.until is None:
        await asyncio.sleep(delay.seconds)
        return None
    deadline = asyncio.get_running_loop().time() + delay.seconds
    while asyncio.get_running_loop().time() < deadline:
        try:
            if delay.until():
                return None
        except Exception as exc:  # reported to the client and in the record
            return f"until raised {type(exc).__name__}: {exc}"
        await asyncio.sleep(0.01)
    return None


def _reply_headers(reply: Reply, method: str) -> Headers:
    """The upstream's end-to-end headers, with the length of the body as the client gets it (a
    reply to HEAD, and a 304, keep the length the upstream announced; a 204 has none)."""
    if method == "HEAD" or reply.status == 304:
        return end_to_end(reply.headers, frozenset())
    headers = end_to_end(reply.headers, frozenset({b"content-length"}))
    if reply.status != 204:
        headers.append((b"content-length", str(len(reply.body)).encode("ascii")))
    return headers


def _proxied(seq: int, request: Request) -> ProxiedRequest:
    headers = tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers)
    return proxied(seq, request.method, request.target, headers, request.body)
