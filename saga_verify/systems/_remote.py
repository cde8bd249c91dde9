"""The harness's half of the remote-effects protocol: what one execution has of one service that
runs outside the world (in this process behind HTTP, in a process, in a container).

Each request of the execution names it (the first one delivered also says it is fresh), and the
effects that delivery caused come back: in the answer's header from an `EffectsMiddleware`, from
the service's event feed, or from a reader of its store, read right after the delivery. A row's
place in the order of effects is ``delivery * ROW_SPAN + its index``: deliveries happen one at a
time in trace order and each reaches one service, so sorting every service's rows by it orders
them as they took effect, exactly as the world numbers rows in this process."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

import httpx

from .._system import EventFeed, Service, StoreReader
from .._world import Endpoint, LedgerRow, World
from .._world._http import HttpParticipant
from ..errors import SagaVerifyError
from ._middleware import EXECUTION_ERROR_HEADER
from ._protocol import (
    CORRELATION_HEADER,
    DELIVERY_HEADER,
    EFFECTS_PATH,
    EXECUTION_HEADER,
    FRESH_HEADER,
    MIDDLEWARE_HEADER,
    ROW_SPAN,
    ROWS_HEADER,
    TIME_HEADER,
    encode_correlation,
)

#: How long a control request (a hook's ``post``, a reset, a feed read) may take, in real seconds.
CONTROL_TIMEOUT = 30.0


class ServiceLostError(BaseException):
    """A request to a running service failed for real (the process died, the connection broke,
    it could not start an execution): not a fault any plan injected, so no verdict can be
    trusted. A BaseException, so neither a saga's ``except Exception`` nor the world's handling
    of lost replies can mistake it for a network fault; it ends the search."""


class ServiceSetupError(SagaVerifyError):
    """A declared service cannot be run on the runtime asked for (nothing that says how, an
    image that does not build, a command that never listens); the message names the service."""


class PlacedService(Protocol):
    """A service of a system running on one runtime, shared by every execution that uses it."""

    @property
    def service(self) -> Service: ...

    @property
    def runtime(self) -> str: ...

    @property
    def url(self) -> str: ...

    def transport(self) -> httpx.BaseTransport: ...

    def async_transport(self) -> httpx.AsyncBaseTransport: ...

    def begin(self) -> int:
        """Number a new execution (its requests carry the number)."""
        ...

    def restart(self) -> None:
        """Kill the service and bring it back (from what it keeps), then wait until it answers."""
        ...

    def wait_ready(self) -> None:
        """Wait until the service answers its ready check again."""
        ...

    def lost(self, request: httpx.Request, exc: BaseException) -> ServiceLostError: ...


class ExecutionLink(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """One execution's requests to one placed service, and the effects they caused (it is the
    participant's ledger: the world iterates it when the run is over)."""

    def __init__(self, placed: PlacedService, name: str, asynchronous: bool) -> None:
        self.placed = placed
        self.name = name
        self.execution = str(placed.begin())
        self._sync = placed.transport()
        self._async = placed.async_transport() if asynchronous else None
        self._fresh_sent = False
        self._rows: list[LedgerRow] = []
        self._incomplete = False
        self._final: tuple[LedgerRow, ...] | None = None
        effects = placed.service.effects
        self._feed = effects if isinstance(effects, EventFeed) else None
        self._reader = effects if isinstance(effects, StoreReader) else None
        self._seen = 0
        self._handle: ServiceHandle | None = None
        self._reset_done = placed.service.reset is None
        #: The execution's world, once it built the saga's client for this service.
        self.world: World | None = None

    # -- requests ----------------------------------------------------------------------------
    def _stamp(self, request: httpx.Request) -> None:
        """Tell the service which delivery this is, for which saga instance, at what virtual time
        (at the moment it is sent: a duplicate or a late copy of a request is another delivery)."""
        world = self.world
        if world is None:
            return
        delivery, correlation = world.current_delivery()
        request.headers[DELIVERY_HEADER] = str(delivery)
        request.headers[CORRELATION_HEADER] = encode_correlation(correlation)
        request.headers[TIME_HEADER] = repr(world.clock.now())

    def _prepare(self, request: httpx.Request) -> bool:
        """Name the execution; the first request delivered says it is fresh. True if this one does."""
        request.headers[EXECUTION_HEADER] = self.execution
        fresh = not self._fresh_sent
        if fresh:
            request.headers[FRESH_HEADER] = "1"
            self._fresh_sent = True  # sent now, whatever comes back: the service saw it
        else:
            # A copy of a request (a duplicate, a late landing) is the same request object sent
            # again: it must not start the execution afresh a second time.
            request.headers.pop(FRESH_HEADER, None)
        return fresh

    def _absorb(self, request: httpx.Request, response: httpx.Response) -> None:
        error = response.headers.get(EXECUTION_ERROR_HEADER)
        if error is not None:
            raise ServiceLostError(f"the {self.name} service could not start an execution: {error}")
        if self._feed is None and self._reader is None:
            if response.headers.get(MIDDLEWARE_HEADER) is None:
                raise ServiceLostError(
                    f"{request.method} {request.url.path} to the {self.name} service was answered without passing "
                    "saga_verify.systems.EffectsMiddleware: mount it in the service's test build, or declare how its "
                    "effects are observed (Service(effects=EventFeed(...) or StoreReader(...), reset=...))"
                )
            rows = response.headers.get(ROWS_HEADER)
            if rows is None:
                self._incomplete = True
            else:
                self._take(rows)
        else:
            self._observe(request)

    def _take(self, header: str) -> None:
        try:
            rows = json.loads(header)
        except ValueError as exc:
            raise ServiceLostError(f"the {self.name} service answered rows that are not JSON: {header[:300]!r}") from exc
        for row in rows:
            self._rows.append(self._row(row))

    def _row(self, row: Mapping[str, Any]) -> LedgerRow:
        delivery = int(row["delivery"])
        return LedgerRow(
            self.name,
            delivery * ROW_SPAN + int(row.get("index", 0)),
            float(row.get("time", 0.0)),
            str(row.get("correlation_id") or ""),
            str(row["action"]),
            row.get("amount", 1) if row.get("amount") is not None else 1,
            row.get("ref"),
            delivery,
        )

    def _begin(self) -> None:
        if not self._reset_done:
            self._reset_done = True
            self._run_reset()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self._begin()
        self._stamp(request)
        self._prepare(request)
        try:
            response = self._sync.handle_request(request)
            response.read()
        except httpx.TransportError as exc:
            raise self.placed.lost(request, exc) from exc
        self._absorb(request, response)
        return response

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert self._async is not None
        self._begin()
        self._stamp(request)
        self._prepare(request)
        try:
            response = await self._async.handle_async_request(request)
            await response.aread()
        except httpx.TransportError as exc:
            raise self.placed.lost(request, exc) from exc
        self._absorb(request, response)
        return response

    def close(self) -> None:
        pass  # the transports belong to the placed service, for every execution

    async def aclose(self) -> None:
        pass

    # -- control: requests that are not deliveries ---------------------------------------------
    def control(self, method: str, path: str, json_body: Any = None) -> httpx.Response:
        """One request within this execution that is no delivery: no fault, no trace, no effects."""
        self._begin()
        request = httpx.Request(
            method,
            f"{self.placed.url}{path}",
            json=json_body,
            extensions={"timeout": httpx.Timeout(CONTROL_TIMEOUT).as_dict()},
        )
        self._prepare(request)
        response: httpx.Response = _off_the_loop(lambda: self._send_control(request))
        error = response.headers.get(EXECUTION_ERROR_HEADER)
        if error is not None:
            raise ServiceLostError(f"the {self.name} service could not start an execution: {error}")
        return response

    def crash(self, path: str) -> None:
        """Send ``POST path`` to a service whose test build dies on it, then wait until it is back."""
        self._begin()
        request = httpx.Request("POST", f"{self.placed.url}{path}", extensions={"timeout": httpx.Timeout(CONTROL_TIMEOUT).as_dict()})
        self._prepare(request)

        def send() -> httpx.Response | None:
            try:
                response = self._sync.handle_request(request)
                response.read()
            except httpx.TransportError:
                return None  # it died before it could answer, as a killed process does
            return response

        answered = _off_the_loop(send)
        if answered is not None:
            raise ServiceLostError(f"the {self.name} service answered POST {path} with {answered.status_code} instead of dying")
        self.placed.wait_ready()

    def _send_control(self, request: httpx.Request) -> httpx.Response:
        try:
            response = self._sync.handle_request(request)
            response.read()
        except httpx.TransportError as exc:
            raise self.placed.lost(request, exc) from exc
        return response

    def _run_reset(self) -> None:
        reset = self.placed.service.reset
        if reset is None:
            return
        if callable(reset):
            try:
                reset(self.handle())
            except Exception as exc:
                raise ServiceLostError(f"the reset of the {self.name} service raised {type(exc).__name__}: {exc}") from exc
            return
        method, _, path = reset.strip().partition(" ")
        request = httpx.Request(method, f"{self.placed.url}{path}", extensions={"timeout": httpx.Timeout(CONTROL_TIMEOUT).as_dict()})
        response = _off_the_loop(lambda: self._send_control(request))
        if response.status_code >= 300:
            raise ServiceLostError(f"the reset of the {self.name} service ({reset}) answered {response.status_code}: {response.text[:300]}")

    # -- observed effects ------------------------------------------------------------------------
    def _observe(self, request: httpx.Request) -> None:
        """Read what the delivery ``request`` was caused (feed or store), stamped with it."""
        try:
            delivery = int(request.headers.get(DELIVERY_HEADER, "-1"))
            when = float(request.headers.get(TIME_HEADER, "0"))
        except ValueError:
            delivery, when = -1, 0.0
        found = self._read_feed() if self._feed is not None else self._read_store()
        for index, (action, amount, ref, correlation) in enumerate(found):
            self._rows.append(LedgerRow(self.name, delivery * ROW_SPAN + index, when, correlation, action, amount, ref, delivery))

    def _read_feed(self) -> list[tuple[str, float, str | None, str]]:
        feed = self._feed
        assert feed is not None
        request = httpx.Request(
            "GET", f"{self.placed.url}{feed.path}", params={"after": self._seen}, extensions={"timeout": httpx.Timeout(CONTROL_TIMEOUT).as_dict()}
        )
        response = _off_the_loop(lambda: self._send_control(request))
        try:
            body = response.json()
        except ValueError as exc:
            raise ServiceLostError(f"the {self.name} service's event feed {feed.path} answered {response.status_code} without JSON") from exc
        events = body.get("events") if isinstance(body, dict) else body
        if response.status_code >= 300 or not isinstance(events, list):
            raise ServiceLostError(f"the {self.name} service's event feed {feed.path} answered {response.status_code}: {response.text[:300]}")
        self._seen += len(events)
        out = []
        for event in events:
            if not isinstance(event, dict):
                raise ServiceLostError(f"the {self.name} service's event feed holds {event!r}, not an event envelope")
            action = feed.actions.get(str(event.get("type")))
            if action is None:
                continue
            data = event.get("data")
            if not isinstance(data, dict):
                data = {}
            amount = data.get(feed.amount) if feed.amount else None
            ref = data.get(feed.ref) if feed.ref else None
            out.append((action, float(amount) if isinstance(amount, (int, float)) else 1.0, None if ref is None else str(ref), str(event.get("correlation_id") or "")))
        return out

    def _read_store(self) -> list[tuple[str, float, str | None, str]]:
        reader = self._reader
        assert reader is not None
        try:
            effects = list(reader.read(self.handle()))
        except Exception as exc:
            raise ServiceLostError(f"the effect reader of the {self.name} service raised {type(exc).__name__}: {exc}") from exc
        new = effects[self._seen :]
        self._seen = len(effects)
        out = []
        for effect in new:
            if not isinstance(effect, Mapping) or not isinstance(effect.get("action"), str):
                raise ServiceLostError(f"the effect reader of the {self.name} service gave {effect!r}: each effect is a mapping with an 'action'")
            amount = effect.get("amount")
            ref = effect.get("ref")
            out.append((effect["action"], float(amount) if isinstance(amount, (int, float)) else 1.0, None if ref is None else str(ref), str(effect.get("correlation_id") or "")))
        return out

    # -- what the world reads --------------------------------------------------------------------
    def __iter__(self) -> Iterator[LedgerRow]:
        if self._final is None:
            if self._incomplete:
                self._rows = self._fetch_rows()
            self._final = tuple(self._rows)
        return iter(self._final)

    def _fetch_rows(self) -> list[LedgerRow]:
        request = httpx.Request("GET", f"{self.placed.url}{EFFECTS_PATH}", params={"execution": self.execution})
        response = _off_the_loop(lambda: self._send_control(request))
        if response.status_code != 200:
            raise ServiceLostError(
                f"an answer of the {self.name} service came without its effects, and {EFFECTS_PATH} answered "
                f"{response.status_code}: {response.text[:300]}"
            )
        return [self._row(row) for row in response.json()]

    def handle(self) -> ServiceHandle:
        if self._handle is None:
            self._handle = ServiceHandle(self)
        return self._handle


class ServiceHandle(HttpParticipant):
    """A service as one execution's saga, hooks and readers reach it: what a `Step`'s ``refuse``
    and ``restart`` hooks are given, and a `StoreReader` reads through, on an HTTP runtime."""

    def __init__(self, link: ExecutionLink) -> None:
        service = link.placed.service
        super().__init__(
            link,
            service.routes or {},
            base_url=link.placed.url,
            asynchronous=link._async is not None,
            ledger=link,
        )
        self._link = link

    def client(self, world: World, endpoints: Mapping[str, Endpoint]) -> httpx.Client | httpx.AsyncClient:
        # The execution's world: its current delivery and clock stamp every request sent.
        self._link.world = world
        return super().client(world, endpoints)

    @property
    def name(self) -> str:
        return self._link.name

    @property
    def runtime(self) -> str:
        """Where the service runs: ``asgi``, ``process`` or ``container``."""
        return self._link.placed.runtime

    @property
    def url(self) -> str:
        return self._link.placed.url

    def post(self, path: str, json: Any = None) -> httpx.Response:
        """Send ``POST path`` to the service within this execution, not as a delivery (no fault,
        not in the trace): how a hook arms a refusal in the service's test build. A status of 300
        or more is a `ServiceLostError`."""
        response = self._link.control("POST", path, json)
        if response.status_code >= 300:
            raise ServiceLostError(f"the {self.name} service answered POST {path} with {response.status_code}: {response.text[:300]}")
        return response

    def get(self, path: str) -> httpx.Response:
        """``GET path`` within this execution, not as a delivery (for a `StoreReader`)."""
        return self._link.control("GET", path)

    def crash(self, path: str) -> None:
        """Send ``POST path`` to a service whose test build kills its own process on it (and whose
        supervisor starts another), then wait until it answers again."""
        self._link.crash(path)

    def restart(self) -> None:
        """Kill the service and bring it back from what it keeps, as the ``crash`` fault does:
        a process is killed and run again, a container restarted, an app in this process built
        again from its factory."""
        self._link.placed.restart()

    def __repr__(self) -> str:
        return f"<service {self.name} on {self.runtime} at {self.url}>"


_pool: concurrent.futures.ThreadPoolExecutor | None = None


def _off_the_loop(call: Any) -> Any:
    """Run a blocking request from code that may sit inside a running event loop (an async saga's
    hook): on a worker thread then, where an in-process app can run its own loop."""
    global _pool
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return call()
    if _pool is None:
        _pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="saga-verify-control")
    return _pool.submit(call).result()
