"""The ``asgi`` runtime: each participant is an HTTP app in this process, reached through an
httpx client whose transport is the harness's, so every request is a delivery point."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx


class SyncASGITransport(httpx.BaseTransport):
    """Lets a synchronous httpx client call an ASGI app: each request runs to completion on a
    private event loop. Synchronous sagas need nothing else to talk to in-process apps.

    It speaks ASGI to the app as ``httpx.ASGITransport`` does (the same scope; the app's
    exceptions reach the caller), in one pass of the loop per request: the whole body arrives in
    one ``http.request`` message, and the reply is complete when ``handle_request`` returns."""

    def __init__(self, app: Any, client: tuple[str, int] = ("127.0.0.1", 123)) -> None:
        self.app = app
        self.client = client
        self._loop = asyncio.new_event_loop()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        status, headers, content = self._loop.run_until_complete(self._serve(request, request.read()))
        return httpx.Response(status, headers=headers, content=content, request=request)

    async def _serve(self, request: httpx.Request, body: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        url = request.url
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": request.method,
            "headers": [(name.lower(), value) for name, value in request.headers.raw],
            "scheme": url.scheme,
            "path": url.path,
            "raw_path": url.raw_path.split(b"?")[0],
            "query_string": url.query,
            "server": (url.host, url.port),
            "client": self.client,
            "root_path": "",
        }
        received = False
        done = asyncio.Event()
        status: int | None = None
        headers: list[tuple[bytes, bytes]] = []
        parts: list[bytes] = []

        async def receive() -> dict[str, Any]:
            nonlocal received
            if received:  # all of the body was read: the next thing a client does is go away
                await done.wait()
                return {"type": "http.disconnect"}
            received = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: Any) -> None:
            nonlocal status, headers
            if message["type"] == "http.response.start":
                if status is not None:
                    raise RuntimeError("the app started its response twice")
                status = message["status"]
                headers = list(message.get("headers", ()))
            elif message["type"] == "http.response.body":
                if status is None or done.is_set():
                    raise RuntimeError("the app sent a response body outside a response")
                chunk = message.get("body", b"")
                if chunk and request.method != "HEAD":
                    parts.append(chunk)
                if not message.get("more_body", False):
                    done.set()

        await self.app(scope, receive, send)
        if status is None or not done.is_set():
            raise RuntimeError(f"the app returned before it completed its response to {request.method} {url.path}")
        return status, headers, b"".join(parts)

    def close(self) -> None:
        if not self._loop.is_closed():
            self._loop.close()


def _refuse_next(participant: Any) -> None:
    """The refuse hook over HTTP: arm the service's own business refusal."""
    participant.state.refuse_next()


def _restart(participant: Any) -> None:
    """The restart hook over HTTP: the service's participant dies and comes back from its store."""
    participant.state.restart()


def reference_saga(variant: Any, home: str | None = None) -> Any:
    """The reference ``variant`` with every participant an HTTP app in this process. Each app is
    built once; every execution gets fresh participants behind them, as in simulation. ``home``
    is the module that holds the saga under the variant's name (so plan files can name it)."""
    from ..reference import Inventory, Notification, Shipping
    from ..reference.services import SERVICES, create_app, serve_participant
    from ..world import HttpParticipant

    classes = {"inventory": Inventory, "payment": variant.payment_class, "shipping": Shipping, "notification": Notification}
    apps = {name: create_app(name, participant=cls(), inspect=False) for name, cls in classes.items()}
    transports = {name: SyncASGITransport(app) for name, app in apps.items()}
    # The harness maps each request to its delivery point by the provider's own routes.
    routes = {name: {op.name: f"POST {op.path}" for op in SERVICES[name].operations} for name in classes}

    def participants() -> dict[str, object]:
        made: dict[str, object] = {}
        for name, cls in classes.items():
            participant = cls()
            serve_participant(apps[name], participant)
            made[name] = HttpParticipant(
                transports[name], routes[name], base_url=f"http://{name}", ledger=participant.ledger, state=participant
            )
        return made

    return http_reference_saga(variant, participants, home)


def http_reference_saga(variant: Any, participants: Callable[[], dict[str, object]], home: str | None) -> Any:
    """The reference ``variant``'s saga run over HTTP against the participants ``participants()``
    builds (HttpParticipants whose ``state`` can ``refuse_next()``), named from module ``home``."""
    from .._saga import Saga, Step
    from ..reference import ORDER, STEPS
    from ..reference._order_client import HttpServices

    saga_class = variant.saga_class

    def run(services: Any, order: Any) -> str:
        return str(saga_class(HttpServices(services), order).run())

    if home is not None:
        run.__module__ = home  # Saga.ref finds the saga through the module of its code
    steps = tuple(
        Step(
            s.participant,
            s.action,
            s.compensation,
            refuse=_refuse_next if s.refuse else None,
            restart=_restart if s.restart else None,
        )
        for s in STEPS
    )
    return Saga(variant.name, steps=steps, participants=participants, run=run, input=ORDER)
