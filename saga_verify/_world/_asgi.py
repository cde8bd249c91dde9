"""Calling an ASGI app in this process from a synchronous httpx client, one request at a time
on a private event loop: the in-process runtime, the contract checks and the effects middleware's
tests all reach apps this way."""

from __future__ import annotations

import asyncio
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
