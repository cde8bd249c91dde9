"""The fault proxy's upstream side: where it forwards (`Target`, checked by `parse_upstream`), and
`Upstream`, the connections of one client connection (or of one lagged copy) to it, through
httpx, each exchange a whole request sent and a whole reply read."""

from __future__ import annotations

import asyncio
import socket
import ssl
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import urlsplit

import httpx

from ..errors import OptionError
from ._client_side import MAX_BODY, Headers, Request

__all__ = ["Reply", "Target", "Upstream", "UpstreamError", "end_to_end", "parse_upstream"]

_HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding", b"upgrade"}
)
_NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]  # loopback HTTP stalls on Nagle otherwise
# Upstreams are plain http:// (parse_upstream says so), so no TLS handshake ever happens; one context
# without certificates spares each connection's transport loading them.
_NO_TLS = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


class Target(NamedTuple):
    url: str
    host: str
    port: int
    authority: bytes


def parse_upstream(url: str) -> Target:
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
    return Target(f"http://{shown}:{port}", host, port, f"{shown}:{port}".encode("idna"))


class UpstreamError(Exception):
    """The upstream could not be reached or gave no whole reply; ``status`` is what the client gets."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


@dataclass
class Reply:
    status: int
    reason: str
    headers: Headers
    body: bytes


def end_to_end(headers: Headers, drop: frozenset[bytes]) -> Headers:
    """The headers a proxy passes on: no hop-by-hop ones (also those Connection names), none of ``drop``."""
    named = {
        token.strip().lower()
        for name, value in headers
        if name.lower() == b"connection"
        for token in value.split(b",")
        if token.strip()
    }
    return [
        (k, v) for k, v in headers if (low := k.lower()) not in _HOP_BY_HOP and low not in named and low not in drop
    ]


class Upstream:
    """The upstream connections of one client connection: an httpx transport of its own, so a
    kept-alive connection serves this client connection's requests only and closes with it."""

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self._transport = httpx.AsyncHTTPTransport(verify=_NO_TLS, socket_options=_NODELAY)

    async def exchange(self, target: Target, request: Request) -> Reply:
        """Send ``request`` to ``target`` and read the whole reply; `UpstreamError` (502, or 504
        when ``timeout`` seconds pass) if that fails. Never resent."""
        headers: Headers = [(b"host", target.authority)]
        headers += end_to_end(request.headers, frozenset({b"host", b"content-length", b"expect"}))
        if request.framed or request.body:
            headers.append((b"content-length", str(len(request.body)).encode("ascii")))
        outgoing = httpx.Request(
            request.method,
            target.url,
            headers=headers,
            content=request.body,
            # The target as the client sent it: httpx would normalise a path it builds itself.
            extensions={"target": request.target.encode("ascii")},
        )
        try:
            async with asyncio.timeout(self.timeout):
                response = await self._transport.handle_async_request(outgoing)
                try:
                    body = await _whole_body(response, target)
                finally:
                    await response.aclose()
        except TimeoutError:
            raise UpstreamError(504, f"{target.url} did not answer within {self.timeout:g} s") from None
        except httpx.ConnectError as error:
            raise UpstreamError(502, f"cannot connect to {target.url}: {error}") from None
        except httpx.RemoteProtocolError as error:
            raise UpstreamError(502, f"{target.url} sent a reply the proxy cannot read: {error}") from None
        except httpx.TransportError as error:
            raise UpstreamError(
                502, f"the connection to {target.url} broke before its reply ended ({type(error).__name__}: {error})"
            ) from None
        reason = response.extensions.get("reason_phrase", b"")
        text = reason.decode("latin-1") if isinstance(reason, bytes) else str(reason)
        return Reply(response.status_code, text, list(response.headers.raw), body)

    async def aclose(self) -> None:
        await self._transport.aclose()


async def _whole_body(response: httpx.Response, target: Target) -> bytes:
    """The reply's body as the upstream sent it (not decoded: its Content-Encoding passes on)."""
    parts: list[bytes] = []
    total = 0
    async for chunk in response.aiter_raw():
        total += len(chunk)
        if total > MAX_BODY:
            raise UpstreamError(502, f"the reply of {target.url} is larger than {MAX_BODY} bytes")
        parts.append(chunk)
    return b"".join(parts)
