"""The HTTP seam: an ``httpx`` transport that routes every request through the world, so a saga
written against ``httpx.Client`` or ``httpx.AsyncClient`` is verified unchanged."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

import httpx

from ..errors import SagaDefinitionError
from ._ledger import Ledger, LedgerRow
from ._services import Endpoint
from ._world import Transported, World


def http_errors(kind: str, message: str) -> BaseException:
    """The errors an httpx caller sees (the request is attached by the transport)."""
    if kind == "timeout":
        return httpx.ReadTimeout(message)
    if kind == "reset":
        return httpx.RemoteProtocolError(message)
    return httpx.ConnectError(message)


class HttpParticipant(Transported):
    """A participant reached over HTTP. ``transport`` is any httpx transport: an
    ``httpx.MockTransport``, an ``httpx.ASGITransport`` for an app in this process, or a real
    ``httpx.HTTPTransport``. ``routes`` maps each operation to ``"METHOD /path"``; a request
    whose path starts with that path is that operation."""

    def __init__(
        self,
        transport: httpx.BaseTransport | httpx.AsyncBaseTransport,
        routes: Mapping[str, str],
        *,
        base_url: str = "http://participant",
        asynchronous: bool = False,
        ledger: Ledger | Iterable[LedgerRow] | None = None,
        state: Any = None,
    ) -> None:
        self.transport = transport
        self.base_url = base_url
        self.asynchronous = asynchronous
        #: Where the service's effects are recorded (for invariants): a `Ledger` the world binds
        #: (a participant in this process), or any iterable of rows read when the run ends.
        self.ledger = ledger
        #: Anything a Step's refuse hook or a custom invariant needs to reach.
        self.state = state
        self.errors = http_errors
        self.routes: list[tuple[str, str, str]] = []
        self._templates: dict[str, re.Pattern[str]] = {}
        for operation, route in routes.items():
            method, _, path = str(route).strip().partition(" ")
            if not method or not path.startswith("/"):
                raise SagaDefinitionError(f"route for {operation!r} must look like 'POST /charges', got {route!r}")
            path = path.rstrip("/") or "/"
            self.routes.append((method.upper(), path, operation))
            if "{" in path:
                # A {parameter} stands for one path segment, as in OpenAPI.
                self._templates[path] = re.compile(re.sub(r"\\\{[^/]*?\\\}", "[^/]+", re.escape(path)) + "(?:/.*)?")
        # The most specific path wins when several match.
        self.routes.sort(key=lambda r: -len(r[1]))

    def client(self, world: World, endpoints: Mapping[str, Endpoint]) -> httpx.Client | httpx.AsyncClient:
        """The client the saga gets as ``services.<participant>``: its transport makes each
        request a delivery of ``world``."""
        if self.asynchronous:
            return httpx.AsyncClient(base_url=self.base_url, transport=AsyncFaultTransport(world, self, endpoints))
        return httpx.Client(base_url=self.base_url, transport=FaultTransport(world, self, endpoints))

    def operation_for(self, request: httpx.Request) -> str:
        path = request.url.path.rstrip("/") or "/"
        for method, prefix, operation in self.routes:
            if request.method != method:
                continue
            template = self._templates.get(prefix)
            if template is not None:
                if template.fullmatch(path):
                    return operation
            elif prefix == "/" or path == prefix or path.startswith(prefix + "/"):
                return operation
        known = ", ".join(f"{m} {p} -> {o}" for m, p, o in self.routes)
        raise SagaDefinitionError(f"{request.method} {request.url} matches no route of this participant; routes: {known}")


def _summarize_request(request: httpx.Request) -> dict[str, Any]:
    summary: dict[str, Any] = {"method": request.method, "path": request.url.path}
    body = request.content
    if body:
        try:
            summary["json"] = json.loads(body)
        except ValueError:
            summary["body"] = body.decode("utf-8", "replace")
    return summary


def _summarize_response(response: Any) -> Any:
    if not isinstance(response, httpx.Response):
        return response
    summary: dict[str, Any] = {"status": response.status_code}
    try:
        summary["json"] = response.json()
    except ValueError:
        if response.content:
            summary["body"] = response.text
    return summary


class _Routing:
    def __init__(self, world: World, participant: HttpParticipant, endpoints: Mapping[str, Endpoint]) -> None:
        self._world = world
        self._participant = participant
        self._endpoints = endpoints
        for ep in endpoints.values():
            ep.summarize = _summarize_response

    def _prepare(self, request: httpx.Request) -> tuple[Endpoint, str | None, dict[str, Any]]:
        try:
            operation = self._participant.operation_for(request)
        except SagaDefinitionError as exc:
            raise self._world.fail(exc) from None
        ep = self._endpoints.get(operation)
        if ep is None:
            raise self._world.fail(SagaDefinitionError(f"route {operation!r} is not an operation of any step of this participant"))
        ep.errors = _errors_for(request)
        return ep, request.headers.get("idempotency-key"), _summarize_request(request)


def _errors_for(request: httpx.Request) -> Any:
    def make(kind: str, message: str) -> BaseException:
        if kind == "timeout":
            return httpx.ReadTimeout(message, request=request)
        if kind == "reset":
            return httpx.RemoteProtocolError(message, request=request)
        return httpx.ConnectError(message, request=request)
    return make


class FaultTransport(_Routing, httpx.BaseTransport):
    """Sync httpx transport: each request is one delivery of the world."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        ep, key, summary = self._prepare(request)
        inner = self._participant.transport
        if not isinstance(inner, httpx.BaseTransport):
            raise self._world.fail(SagaDefinitionError("a sync client needs a sync transport; set asynchronous=True for async sagas"))

        world = self._world

        def send() -> httpx.Response:
            response = inner.handle_request(request)
            response.read()
            return response

        result: httpx.Response = world.drive(world.deliver(ep, send, key, summary))
        return result


class AsyncFaultTransport(_Routing, httpx.AsyncBaseTransport):
    """Async httpx transport: each request is one delivery of the world."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        ep, key, summary = self._prepare(request)
        inner = self._participant.transport
        if not isinstance(inner, httpx.AsyncBaseTransport):
            raise self._world.fail(
                SagaDefinitionError("an async client needs an async transport (httpx.ASGITransport, httpx.MockTransport)")
            )

        world = self._world

        async def send() -> httpx.Response:
            response = await inner.handle_async_request(request)
            await response.aread()
            return response

        result: httpx.Response = await world.adrive(world.deliver(ep, send, key, summary))
        return result


